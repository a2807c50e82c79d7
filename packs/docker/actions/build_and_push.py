def run(app_name, version, registry):
    if version.endswith("-broken"):
        raise RuntimeError(f"build of {app_name}:{version} failed: Dockerfile step 3 returned 1")
    return {"image_uri": f"{registry}/{app_name}:{version}"}
