"""Texts shared by several of the validator's test modules: a workflow's path, a clean pack, a message."""

from __future__ import annotations

WF = "p/workflows/w.yaml"


# --- good files ------------------------------------------------------------------------

GOOD_WORKFLOW = """\
    ref: p.w
    parameters:
      name: {type: string, required: true}
      count: {type: integer, default: 1}
      secret_token: {type: string, secret: true}
    output:
      type: object
      properties: {out: {type: string}}
    vars:
      greeting: "hello {{ parameters.name }}"
    tasks:
      - name: first
        action: core.echo
        input:
          message: "{{ vars.greeting }} in {{ pack.config.region }} ({{ pack.ref }})"
        publish:
          - said: "{{ task.first.result.message }}"
          - again: "{{ vars.said }}"
        on_success: each
        on_failure: fail
      - name: each
        action: p.greet
        with_items: "{{ range(parameters.count) | list }}"
        batch_size: 2
        concurrency: 1
        when: "{{ parameters.count > 0 }}"
        input:
          who: "{{ item }} #{{ index }}"
        decision:
          - when: "{{ task.each.total_count > 1 and task.each.result }}"
            next: group
          - default: succeed
      - name: group
        type: parallel
        tasks:
          - name: m1
            action: core.noop
          - name: m2
            action: core.local
            input:
              cmd: |
                {% for line in [vars.said, vars.again] %}
                echo {{ line | upper }} {{ loop.index }}
                {% endfor %}
            retry: {count: 2, delay: 1, on_error: "{{ task.m2.error.type != 'X' }}"}
        on_complete: [noop]
    output_map:
      out: "{{ task.m1.status }} {{ system.execution_id }} {{ kv.get('x', default=1) }}"
      who: "{{ system.identity.login }} {{ kv.get_secret('k') | length }} {{ task.group.status }}"
"""

GOOD_FILES = {
    "config.yaml": """\
        type: object
        properties:
          region: {type: string, default: eu}
          token: {type: string, secret: true}
    """,
    "actions/greet.yaml": """\
        name: greet
        runner_type: python-script
        entry_point: greet.py
        parameters:
          who: {type: string, required: true}
          greeting: {type: string, required: true, default: hi}
        output: {type: object}
    """,
    "actions/greet.py": "def run(**params):\n    return params\n",
    "workflows/w.yaml": GOOD_WORKFLOW,
}


NO_OUTPUT_MAP = "'output' without 'output_map': the output is null, which fails unless the schema allows it"
