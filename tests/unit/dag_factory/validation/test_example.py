"""The design's example deploy_application.yaml (beside the repository), validated against stand-ins."""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[5] / "shared" / "spec" / "examples" / "deploy_application.yaml"


# --- the design's example ----------------------------------------------------------------------

STAND_INS = {
    "my_pack": {
        "create_deployment_record": ["app_name", "version", "environment"],
        "update_deployment_status": ["deployment_id", "status"],
        "cleanup_resources": ["deployment_id", "rollback"],
    },
    "docker": {"build_and_push": ["app_name", "version", "registry"]},
    "kubernetes": {
        "apply_deployment": ["app_name", "image", "replicas"],
        "wait_for_ready": ["deployment", "timeout"],
        "rollback_deployment": ["app_name"],
    },
    "http": {"get": ["url", "expected_status"]},
    "slack": {"post_message": ["channel", "message"]},
}


def _example_packs(packs, config: str, http_parameters: list[str]) -> None:
    for pack, actions in STAND_INS.items():
        files = {}
        for name, parameters in actions.items():
            if pack == "http":
                parameters = http_parameters
            props = "".join(f"  {p}: {{required: true}}\n" for p in parameters)
            files[f"actions/{name}.yaml"] = f"name: {name}\nrunner_type: echo\nparameters:\n{props}"
        packs.pack(pack, files)
    (packs.root / "my_pack" / "workflows").mkdir()
    shutil.copy(EXAMPLE, packs.root / "my_pack" / "workflows" / "deploy_application.yaml")
    (packs.root / "my_pack" / "config.yaml").write_text(config)


def test_the_design_example_validates_clean(packs):
    config = "type: object\nproperties:\n  docker_registry: {type: string, default: registry.local}\n"
    _example_packs(packs, config, ["url", "expected_status"])
    report = packs.validate()
    assert report.problems == []


def test_the_design_example_flags_what_its_stand_ins_do_not_provide(packs):
    _example_packs(packs, "type: object\nproperties:\n  registry: {type: string}\n", ["url"])
    assert packs.problems("my_pack/workflows/deploy_application.yaml") == [
        "54:17: error: unknown config key 'docker_registry' in template: not a property of config.yaml"
        " of pack 'my_pack' (did you mean 'registry'?)",
        "82:7: error: action 'http.get' has no parameter 'expected_status'",
    ]
    assert set(packs.validate().invalid_workflows) == {"my_pack.deploy_application"}
