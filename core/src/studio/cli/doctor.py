"""``studio doctor``: the environment as studio sees it."""

from __future__ import annotations

import platform
import sys

from studio import __version__
from studio.backends import CONCERNS, OPTIONAL_LIBRARIES, choose, importable, usable


def report() -> str:
    lines = [f"studio {__version__}", f"python {sys.version.split()[0]} ({platform.platform()})"]
    cuda = False
    try:
        import torch

        cuda = torch.cuda.is_available()
        lines.append(f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'})")
        if cuda:
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            lines.append(f"CUDA devices: {', '.join(names)}")
        else:
            lines.append("CUDA devices: none (running on CPU)")
    except ImportError:
        lines.append("torch: NOT INSTALLED (pip install torch)")
    if cuda:
        lines.append(
            "training steps: captured as CUDA graphs where the method's system allows it "
            "(trainer.cuda_graphs, on by default; each run's log says whether its steps are, "
            "and why not)"
        )
    else:
        lines.append("training steps: eager (CUDA graphs need a CUDA device)")
    lines.append("backends (auto choice first):")
    for concern, candidates in CONCERNS.items():
        states = []
        for backend in candidates:
            if usable(backend, cuda):
                state = "ok"
            elif importable(backend.module):
                state = "installed, needs CUDA"
            else:
                state = "not installed"
            states.append(f"{backend.name} [{state}]")
        lines.append(f"  {concern}: active={choose(concern, 'auto', cuda)}; {', '.join(states)}")
    lines.append("optional libraries:")
    for module, purpose in OPTIONAL_LIBRARIES.items():
        state = "ok" if importable(module) else "not installed"
        lines.append(f"  {module}: {state} ({purpose})")
    from studio.models.hub import hub_cache_dir, list_cached_models

    cache = hub_cache_dir()
    lines.append(f"model cache: {cache} ({len(list_cached_models(cache))} models)")
    from studio.registry import get_registry

    registry = get_registry()
    lines.append(
        f"plugins: {len(registry.plugins)} loaded, {len(registry.broken)} broken, "
        f"{len(registry.disabled)} disabled (details: studio plugins list)"
    )
    return "\n".join(lines)
