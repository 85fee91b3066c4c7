"""The shared vocabulary of every layer: statuses, remedies and failure kinds, the task outcome, a run's
failure and the hub's messages. It imports nothing of ours but exceptions, so any layer may import it."""
