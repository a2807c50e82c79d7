"""Stand-ins for kubectl: deterministic results, no cluster."""


def run(**params):
    if "image" in params:
        return {"deployment": params["app_name"], "image": params["image"], "replicas": params["replicas"]}
    if "deployment" in params:
        if params["deployment"].endswith("-unready"):
            raise TimeoutError(f"deployment {params['deployment']} has 0/3 ready replicas")
        return {"deployment": params["deployment"], "ready": True}
    return {"deployment": params["app_name"], "rolled_back": True}
