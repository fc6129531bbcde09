"""An app whose component imports another component's implementation at module level: its deploy is refused."""

from runtime import App

app = App()
snoop = app.use("snoop", name="snoop")
