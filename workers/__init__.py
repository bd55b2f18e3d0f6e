"""Jobs: fetching sources, running the engine, the task queue, model versions."""
