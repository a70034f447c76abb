"""Generated long-context tasks: a registry by name.

```python
from scalelaw.measure.tasks import get_task
task = get_task("niah-multikey", needles=4, queries=2)
sample = task.generate(count_tokens, target=1024, seed=0, index=0)
task.score("<answer>1234567, 7654321</answer>", sample)
```
"""

from __future__ import annotations

from typing import Any

from scalelaw.measure.tasks.base import MIN_FILL, Sample, Task, TaskError, TokenCounter
from scalelaw.measure.tasks.common_words import CommonWordsTask
from scalelaw.measure.tasks.needle import NeedleTask
from scalelaw.measure.tasks.stories import StoryFilteringTask, StoryMultiHopTask, StoryRetrievalTask
from scalelaw.measure.tasks.variables import VariableTrackingTask

TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        NeedleTask,
        VariableTrackingTask,
        CommonWordsTask,
        StoryRetrievalTask,
        StoryMultiHopTask,
        StoryFilteringTask,
    )
}


def list_tasks() -> list[str]:
    """Names of the built-in tasks."""
    return sorted(TASKS)


def get_task(name: str, **params: Any) -> Task:
    """Build task `name` with its parameters; unknown names or parameters raise TaskError."""
    try:
        cls = TASKS[name]
    except KeyError:
        raise TaskError(f"unknown task {name!r}; known: {', '.join(list_tasks())}") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise TaskError(f"task {name}: bad parameters {params}: {exc}") from None


__all__ = [
    "MIN_FILL",
    "TASKS",
    "Sample",
    "Task",
    "TaskError",
    "TokenCounter",
    "get_task",
    "list_tasks",
]
