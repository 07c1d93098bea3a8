"""The product's label codes (`taxonomy.md`) with their display names."""

from __future__ import annotations

# code → (中文, English), in the taxonomy's order.
LABELS: dict[str, tuple[str, str]] = {
    "slow_service": ("窗口服务问题", "Poor counter service"),
    "lazy_procrastination": ("庸懒散拖", "Inaction and procrastination"),
    "formalism": ("形式主义官僚主义", "Formalism and bureaucracy"),
    "project_irregularity": ("工程项目违规", "Project irregularity"),
    "village_affairs": ("基层小微权力", "Village and community affairs"),
    "medical": ("医疗医保", "Hospitals and medical insurance"),
    "education": ("教育领域", "Schools and education"),
    "bribery_gifts": ("吃拿卡要与违规收送", "Bribes, gifts and banquets"),
    "other": ("其他", "Other / not a misconduct report"),
}
FALLBACK_LABEL = "other"


def display_name(code: str, locale: str = "zh") -> str:
    names = LABELS.get(code)
    if names is None:
        return code
    return names[0] if locale == "zh" else names[1]


_BY_NAME = {name.casefold(): code for code, names in LABELS.items() for name in (code, *names)}


def label_code(written: str) -> str | None:
    """The code a dataset's label means: the code itself, or its Chinese or English name as the console's export
    writes it (case and surrounding spaces aside); None for anything else."""
    return _BY_NAME.get(written.strip().casefold())
