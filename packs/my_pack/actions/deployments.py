"""Local stand-ins for a deployment database: pure functions, no external system."""

import hashlib


def run(**params):
    if "status" in params:  # update_deployment_status
        return {"deployment_id": params["deployment_id"], "status": params["status"]}
    if "rollback" in params:  # cleanup_resources
        return {"deployment_id": params.get("deployment_id"), "cleaned": True, "rolled_back": params["rollback"]}
    key = f"{params['app_name']}-{params['version']}-{params['environment']}"
    deployment_id = "dep-" + hashlib.sha1(key.encode()).hexdigest()[:8]
    return {"id": deployment_id, "health_url": f"http://{params['app_name']}.{params['environment']}.local/health"}
