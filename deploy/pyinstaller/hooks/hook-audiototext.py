"""PyInstaller hook: every audiototext module (commands are imported lazily, some by name)
and its data files (the web page, the VAD and helper graphs, py.typed)."""

from PyInstaller.utils.hooks import collect_data_files, collect_submodules

hiddenimports = collect_submodules("audiototext")
datas = collect_data_files("audiototext")
