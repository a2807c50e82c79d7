#!/usr/bin/env bash
# The main job on a fresh machine: install, validate the example packs, list their DAGs,
# and run my_pack.deploy_application end to end through Airflow (dag.test() on SQLite),
# once on its success path and once on its failure path (a "-broken" version).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.airflow}"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export ATTUNE_PACKS_PATH="$PWD/packs"
bin=.venv/bin

echo "== attune-airflow validate --packs packs"
"$bin/attune-airflow" validate --packs packs

echo "== DAGs compiled from packs/ (dag_id, tasks)"
"$bin/python" - <<'PY'
from attune_provider.dag_factory.factory import load_packs
from attune_provider.settings import packs_paths
for dag_id, dag in sorted(load_packs(packs_paths()).dags.items()):
    print(f"  {dag_id:40} {len(dag.tasks):3} tasks  tags={sorted(dag.tags)}")
PY

echo "== success path"
"$bin/attune-airflow" run my_pack.deploy_application -p app_name=shop -p version=1.4.2 -p environment=staging -p auto_approve=true

echo "== failure path (the image build fails: cleanup and failure notice run, the workflow ends failed)"
"$bin/attune-airflow" run my_pack.deploy_application -p app_name=shop -p version=1.4.3-broken \
  || echo "(exit $? as expected: the workflow failed)"

cat <<TXT

Next:
  - the same runs in the Airflow UI:  AIRFLOW_HOME=$AIRFLOW_HOME ATTUNE_PACKS_PATH=$ATTUNE_PACKS_PATH \\
      AIRFLOW__CORE__DAGS_FOLDER=$PWD/dags $bin/airflow standalone   (then open http://localhost:8080)
  - machine-readable result:        $bin/attune-airflow run my_pack.deploy_application -p app_name=shop -p version=1.4.2 -p auto_approve=true --json
  - write your own pack:            docs/writing-packs.md
TXT
