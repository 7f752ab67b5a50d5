"""A batch service's output must not be inside the folder it reads (Python only: comparing
the paths needs the normalisation in inferops.contract.batch_paths, which CEL cannot do).

The worker lists every file under a folder input, so results written inside it come back
as inputs: 300 inputs were reported as 3,000. The worker config refuses the same paths again
in the pod (a spec may reach a cluster without the webhook).
"""

from __future__ import annotations

from collections.abc import Iterator

from inferops.api.batch import BatchServiceSpec
from inferops.contract.batch_paths import output_inside_input, output_inside_input_message

Finding = tuple[str, str]


def batch_path_rules(spec: BatchServiceSpec) -> Iterator[Finding]:
    if output_inside_input(spec.input_path, spec.output_path):
        yield "spec.outputPath", output_inside_input_message(spec.input_path)
