// Registers the service worker (../sw.js) once the page has loaded, so its downloads (the
// page's files, the runtime, the VAD model) never compete with the first load.

export function registerOffline() {
  if (!("serviceWorker" in navigator) || !window.isSecureContext) return;
  const register = () =>
    navigator.serviceWorker
      .register(new URL("../sw.js", import.meta.url), { scope: new URL("../", import.meta.url).pathname })
      .catch((err) => console.warn("offline use is not available:", err));
  if (document.readyState === "complete") register();
  else window.addEventListener("load", register, { once: true });
}
