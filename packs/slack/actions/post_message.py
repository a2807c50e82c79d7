def run(channel, message):
    print(f"[{channel}] {message}")
    return {"channel": channel, "message": message, "ok": True}
