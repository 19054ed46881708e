"""The contract between the backend (producer) and the worker (consumer).

The backend enqueues by dotted path, so it never imports the worker's code.
"""

QUEUE_NAME = "moorage-items"
PROCESS_ITEM = "moorage_worker.tasks.process_item"
