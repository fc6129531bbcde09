from runtime import App

app = App()
plain = app.use("plain", name="plain")
netty = app.use("netty", name="netty")
