"""The app `bulkhead bench --only neighbour` drives: two sibling mounts, one quiet and one noisy.

The bench calls each mount's functions directly with the admin key
(``steady:read``, ``noisy:spin``, ``noisy:busy``), so the only thing the two
mounts share is the coordinator and the machine.
"""

from runtime import App

app = App()
steady = app.use("steady", name="steady")
noisy = app.use("noisy", name="noisy")

