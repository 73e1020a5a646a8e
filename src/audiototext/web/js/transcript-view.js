// The transcript on screen: one paragraph per utterance. Finals go into #finals (an
// aria-live region, so screen readers hear each final once); partials, in italics and muted,
// sit in #partials right after them and are replaced in place by their final. Times show on
// hover (title). The view follows new text unless the person has scrolled up.

import { formatClock } from "./format.js";

const STICK_PX = 32;

export class TranscriptView {
  constructor({ scroller, finals, partials, empty, jump }, t) {
    this.scroller = scroller;
    this.finalsEl = finals;
    this.partialsEl = partials;
    this.emptyEl = empty;
    this.jumpEl = jump;
    this.t = t;
    this.finalEls = new Map(); // key -> <p>
    this.partialEls = new Map();
    this.follow = true;
    this.programmatic = false;
    scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    jump.addEventListener("click", () => {
      this.follow = true;
      this.jumpEl.hidden = true;
      this.scrollToEnd();
    });
  }

  onScroll() {
    if (this.programmatic) {
      this.programmatic = false;
      return;
    }
    const s = this.scroller;
    this.follow = s.scrollTop + s.clientHeight >= s.scrollHeight - STICK_PX;
    this.jumpEl.hidden = this.follow;
  }

  scrollToEnd() {
    const s = this.scroller;
    if (s.scrollTop + s.clientHeight >= s.scrollHeight - 1) return;
    this.programmatic = true;
    s.scrollTop = s.scrollHeight;
  }

  title(u) {
    if (u.start_s === null) return "";
    return `${formatClock(u.start_s)} – ${formatClock(u.end_s)}`;
  }

  /** Shows a change returned by TranscriptModel.apply. */
  update({ change, utterance: u }) {
    if (change === "partial") {
      let p = this.partialEls.get(u.key);
      if (!p) {
        p = document.createElement("p");
        p.className = "utt partial";
        this.partialEls.set(u.key, p);
        insertSorted(this.partialsEl, p, u);
      }
      // The stable prefix is drawn a little firmer than the rest of the guess.
      const stable = u.stable_text && u.text.startsWith(u.stable_text) ? u.stable_text : "";
      p.replaceChildren();
      if (stable) {
        const span = document.createElement("span");
        span.className = "stable";
        span.textContent = stable;
        p.append(span, u.text.slice(stable.length));
      } else {
        p.textContent = u.text;
      }
      p.title = this.title(u);
      p.dataset.utterance = u.key;
    } else if (change === "final") {
      const partial = this.partialEls.get(u.key);
      if (partial) {
        partial.remove();
        this.partialEls.delete(u.key);
      }
      if (u.text) {
        const p = document.createElement("p");
        p.className = "utt final";
        p.textContent = u.text;
        p.title = this.title(u);
        if (u.origin === "local") {
          // Seen and heard: a badge, read with the text by screen readers.
          const badge = document.createElement("span");
          badge.className = "origin";
          badge.textContent = this.t("transcript.local_badge");
          p.prepend(badge, " ");
          p.classList.add("local");
          p.dataset.origin = "local";
        }
        p.dataset.utterance = u.key;
        this.finalEls.set(u.key, p);
        insertSorted(this.finalsEl, p, u);
      }
    } else {
      return;
    }
    this.emptyEl.hidden = this.finalEls.size + this.partialEls.size > 0;
    if (this.follow) this.scrollToEnd();
  }

  /** Partials left when a session ends without their final (e.g. a fatal error). */
  dropPartials() {
    for (const p of this.partialEls.values()) p.remove();
    this.partialEls.clear();
    this.emptyEl.hidden = this.finalEls.size > 0;
  }

  clear() {
    this.finalsEl.replaceChildren();
    this.partialsEl.replaceChildren();
    this.finalEls.clear();
    this.partialEls.clear();
    this.emptyEl.hidden = false;
    this.follow = true;
    this.jumpEl.hidden = true;
  }
}

function insertSorted(container, el, u) {
  el.dataset.session = String(u.session);
  el.dataset.id = String(u.utterance_id);
  const last = container.lastElementChild;
  const after = (child) => {
    const s = Number(child.dataset.session);
    return s < u.session || (s === u.session && Number(child.dataset.id) < u.utterance_id);
  };
  if (!last || after(last)) {
    container.append(el);
    return;
  }
  let before = null;
  for (const child of container.children) {
    const s = Number(child.dataset.session);
    const id = Number(child.dataset.id);
    if (s > u.session || (s === u.session && id > u.utterance_id)) {
      before = child;
      break;
    }
  }
  container.insertBefore(el, before);
}
