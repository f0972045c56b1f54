"""mkdocs hook: the reference pages generated from the code at every build (byol.cli.reference),
so that no hand-kept copy of the keys or the options can go stale."""
from mkdocs.structure.files import File


def on_files(files, config):
    from byol.cli.reference import cli_reference, config_reference

    for uri, text in (("reference/config.md", config_reference()), ("reference/cli.md", cli_reference())):
        files.append(File.generated(config, uri, content=text))
    return files
