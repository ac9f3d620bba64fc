"""MkDocs hooks of the documentation build (``mkdocs.yml``: ``hooks``).

- The tutorials (``tutorials/*.ipynb``) join the site as they are, without copying them into
  ``docs/``; the mkdocs-jupyter plugin renders them (not executed).
- A line ``<!-- api: MODULE -->`` in a page becomes one ``::: path`` block (mkdocstrings) per
  public name of ``MODULE`` (:mod:`api_pages`), so that the API reference lists every public
  name without a list to keep in step by hand; an object listed on an earlier page of
  :data:`api_pages.PAGES` (the top level first) is linked to there instead of being documented
  twice.
"""

import re
import sys
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import api_pages as api  # noqa: E402 - after the path above

_MARKER = re.compile(r"^<!-- api: (?P<module>[\w.]+) -->$", re.MULTILINE)


@event_priority(100)  # before mkdocs-jupyter looks for notebooks
def on_files(files, config):
    for notebook in sorted((ROOT / "tutorials").glob("*.ipynb")):
        files.append(
            File(
                f"tutorials/{notebook.name}",
                src_dir=str(ROOT),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    return files


_OWNERS: dict = {}


def on_pre_build(config):
    _OWNERS.clear()
    _OWNERS.update(api.owners())


def on_page_markdown(markdown, page, config, files):
    here = page.file.src_uri.removeprefix("api/")

    def expand(match: re.Match) -> str:
        module = match.group("module")
        blocks = []
        for name in api.public_names(module):
            path = api.object_path(module, name)
            owner_page, owner_module, owner_name = _OWNERS[path]
            if (owner_page, owner_module, owner_name) != (here, module, name):
                blocks.append(
                    f"### `{name}`\n\nDocumented as [`{owner_module}.{owner_name}`][{path}]."
                )
            else:
                blocks.append(f'::: {path}\n    options:\n      heading: "{name}"')
        return "\n\n".join(blocks)

    return _MARKER.sub(expand, markdown)
