"""What an image runs, as its Dockerfile defines it, read with dockerfile-parse (the builder's
grammar: continuation lines, JSON and shell forms, ARG defaults in FROM): the base images, and
the final stage's ENV, start command, user, working directory and ports.

The live tests start the SAM servers the way their images start them: the image's command,
with the image's ENV overridden by the env the SAM Deployment declares, as Kubernetes overrides
an image's env (`as_kubernetes_runs_it`). The platform's server (tests/sam_server_process.py)
and the upstream example (tests/sam_real_backend.py) both read their Dockerfile here.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Mapping, Optional, Union

from dockerfile_parse import DockerfileParser


@dataclass(frozen=True)
class ImageDefinition:
    parent_images: tuple[str, ...]
    # The final stage's ENV, less values a build argument fills in (`${...}`): what the image
    # holds depends on how it was built.
    env: Mapping[str, str]
    # The exec form's argv, or the shell form's command line (run by /bin/sh -c).
    command: Union[tuple[str, ...], str]
    user: Optional[str]
    workdir: Optional[str]
    exposed: tuple[str, ...]
    # Every RUN of every stage, continuation lines joined.
    runs: tuple[str, ...]
    # What each COPY of every stage takes from the build context (not from another stage), its
    # build arguments at their defaults.
    context_sources: tuple[str, ...]


def _final_stage(structure: list[dict]) -> list[dict]:
    starts = [index for index, instruction in enumerate(structure) if instruction["instruction"] == "FROM"]
    return structure[starts[-1]:]


def _last(instructions: list[dict], name: str) -> Optional[str]:
    values = [i["value"] for i in instructions if i["instruction"] == name]
    return values[-1] if values else None


def _context_sources(structure: list[dict]) -> tuple[str, ...]:
    defaults = dict(i["value"].partition("=")[::2] for i in structure if i["instruction"] == "ARG")
    sources = []
    for instruction in structure:
        words = instruction["value"].split()
        if instruction["instruction"] in ("COPY", "ADD") and not any(w.startswith("--from=") for w in words):
            sources += [re.sub(r"\$\{(\w+)\}", lambda arg: defaults[arg.group(1)], word)
                        for word in words[:-1] if not word.startswith("--")]
    return tuple(sources)


def read_image_definition(dockerfile: str) -> ImageDefinition:
    # With env_replace, ENV values would have their ${...} filled in from build arguments the
    # test does not know; ARG defaults in FROM are resolved either way.
    parser = DockerfileParser(fileobj=io.BytesIO(dockerfile.encode()), env_replace=False, cache_content=True)
    final = _final_stage(parser.structure)
    command = _last(final, "CMD") or ""
    return ImageDefinition(
        parent_images=tuple(parser.parent_images),
        env={name: value for name, value in parser.envs.items() if "${" not in value},
        command=tuple(json.loads(command)) if command.startswith("[") else command,
        user=_last(final, "USER"),
        workdir=_last(final, "WORKDIR"),
        exposed=tuple(port for i in final if i["instruction"] == "EXPOSE" for port in i["value"].split()),
        runs=tuple(i["value"] for i in parser.structure if i["instruction"] == "RUN"),
        context_sources=_context_sources(parser.structure),
    )


def as_kubernetes_runs_it(image_env: Mapping[str, str], deployment_env: Mapping[str, str]) -> dict[str, str]:
    """The container's environment: the image's ENV, each name the Deployment sets overridden by it."""
    return {**image_env, **deployment_env}
