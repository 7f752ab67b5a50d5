"""examples/iris-batch-manifest.yaml on real pods: the seed's CSV rows and a manifest with a
missing source in object storage, two workers sharing the sources, the seed's output format,
and sources no worker may read; a worker within its memory limit under 100 MiB answers.

The example names its object store `http://minio.storage.svc:9000`; here that Service has
no selector and its EndpointSlice points at an S3 server (moto) on the node's address, so
the example applies unchanged and its pods resolve and reach the store like any Service.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import realnode
from k8s_helpers import Kubectl
from kubernetes import client

from tests.e2e.support import (
    PROJECT_IMAGE,
    REPO,
    NodeS3,
    Operator,
    apply_examples,
    apply_objects,
    fresh_buckets,
    pods_report,
    wait_phase,
)

pytestmark = pytest.mark.timeout(900)

EXAMPLES = REPO / "examples"
BUCKET = "inferops-examples"
SEED_CSV = "5.1,3.5,1.4,0.2\n4.9,3.0,1.4,0.2\n4.7,3.2,1.3,0.2\n"
OTHER_CSV = "6.7,3.0,5.2,2.3\n5.9,3.0,4.2,1.5\n"
SOURCES = [
    f"s3://{BUCKET}/iris/input/data.csv",
    f"s3://{BUCKET}/iris/input/more.csv",
    f"s3://{BUCKET}/iris/input/missing.csv",
]
OUTPUT = f"s3://{BUCKET}/iris/output-manifest/"
# Sources no worker in a pod may read (issue 13): the node's own address (the S3 server's,
# on the test bridge), a Service name (a ClusterIP), the pod's loopback where its model
# sidecar listens, in two spellings, and a file of the worker's own container. Each must be
# one FAILED line, refused before any connection: nothing here leaves the node.
EGRESS_REFUSED = {
    f"https://{realnode.NODE_IP}:9000/{BUCKET}/iris/input/data.csv": "a private address",
    f"https://minio.storage.svc:9000/{BUCKET}/iris/input/data.csv": "a private address",
    "https://127.0.0.1:8080/health": "(127.0.0.1: a loopback address",
    "https://0x7f000001:8080/health": "(127.0.0.1: a loopback address",
    "https://[::ffff:127.0.0.1]:8080/health": "(127.0.0.1: a loopback address",
}
LOCAL_REFUSED = "file:///etc/passwd"


def read_s3(s3: Any, uri: str) -> str:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return str(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())


def test_manifest_batch_on_two_real_workers(
    operator: Operator,
    kubectl: Kubectl,
    api_client: Any,
    object_store: NodeS3,
    storage_secret: str,
) -> None:
    ns = operator.apps
    s3 = fresh_buckets(object_store, BUCKET)
    s3.put_object(Bucket=BUCKET, Key="iris/input/data.csv", Body=SEED_CSV.encode())
    s3.put_object(Bucket=BUCKET, Key="iris/input/more.csv", Body=OTHER_CSV.encode())
    hostile = [*EGRESS_REFUSED, LOCAL_REFUSED]
    s3.put_object(
        Bucket=BUCKET,
        Key="iris/input.manifest",
        Body="".join(json.dumps({"source": s}) + "\n" for s in [*SOURCES, *hostile]).encode(),
    )
    core = client.CoreV1Api(api_client)
    apply_examples(kubectl, ns, "iris-application.yaml", "iris-batch-manifest.yaml")
    try:
        status = wait_phase(
            api_client, ns, "batchservices", "iris-batch-manifest", ("Completed", "Failed"), 400
        )
        assert status["phase"] == "Completed", f"{status}\n{pods_report(api_client, ns)}"
        assert status["progress"] == {"total": 9, "succeeded": 2, "failed": 7}, status
        task = status["taskId"]

        # two real pods, one per completion index, both on the node and both succeeded
        pods = core.list_namespaced_pod(ns, label_selector="job-name").items
        pods = [
            p
            for p in pods
            if p.metadata.labels.get("job-name", "").startswith("iris-batch-manifest")
        ]
        assert sorted(
            p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods
        ) == ["0", "1"], [p.metadata.name for p in pods]
        for pod in pods:
            assert pod.spec.node_name == realnode.NODE_NAME
            assert pod.status.phase == "Succeeded"

        # worker i writes manifest number i: no two workers share a file
        manifests = sorted(status["outputManifests"])
        assert manifests == [
            f"{OUTPUT}infer-result-{task}.manifest",
            f"{OUTPUT}infer-result-{task}_1.manifest",
        ], manifests
        lines = [json.loads(line) for m in manifests for line in read_s3(s3, m).splitlines()]
        by_source = {line["source"]: line for line in lines}
        assert sorted(by_source) == sorted(SOURCES + hostile) and len(lines) == 9  # once each
        for source, reason in EGRESS_REFUSED.items():
            message = by_source[source]["error_message"]
            assert message.startswith("Download file failed: refusing to connect to "), message
            assert reason in message, message
        assert by_source[LOCAL_REFUSED]["error_message"] == (
            "local paths are only for local runs (inferops batch run)"
        )
        for source in SOURCES[:2]:
            name = source.rsplit("/", 1)[1]
            assert by_source[source] == {
                "source": source,
                "result": "SUCCESSFUL",
                "inference-loc": f"{OUTPUT}infer-result-{task}/{name}_result.txt",
            }
        failed = by_source[SOURCES[2]]
        assert list(failed) == ["source", "result", "error_message"], failed
        assert failed["result"] == "FAILED" and failed["error_message"]

        # one JSON line per CSV row, in row order, with the model's real answer
        def species(source: str) -> list[str]:
            text = read_s3(s3, by_source[source]["inference-loc"])
            return [json.loads(line)["resp_data"][0]["predictresult"] for line in text.splitlines()]

        assert species(SOURCES[0]) == ["setosa"] * 3
        assert species(SOURCES[1]) == ["virginica", "versicolor"]
        print(f"batch {task}: {status['progress']}; manifests {manifests}; failed {failed}")
    finally:
        kubectl("delete", "-n", ns, "bs", "iris-batch-manifest", "--ignore-not-found")


# A model that answers every request with 100 MiB (chunked, so the worker cannot refuse it
# from its headers): three such answers at once took the worker past its 512Mi limit.
LARGE_ANSWERS = """
from aiohttp import web

CHUNK = b"x" * (1 << 20)


async def health(request):
    return web.Response(text="ok")


async def predict(request):
    await request.read()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    for _ in range(100):
        await response.write(CHUNK)
    await response.write_eof()
    return response


app = web.Application(client_max_size=64 << 20)
app.router.add_get("/health", health)
app.router.add_post("/", predict)
web.run_app(app, host="0.0.0.0", port=8080, access_log=None)
"""


def large_answer_objects(namespace: str) -> list[dict[str, Any]]:
    api = {
        "method": "post",
        "url": "/",
        "request": {
            "Content-type": "multipart/form-data",
            "data": {"type": "object", "properties": {"images": {"type": "file"}}},
        },
    }
    version = {
        "version": "1.0.0",
        "image": PROJECT_IMAGE,
        "command": ["python", "-c", LARGE_ANSWERS],
        "apis": [api],
    }
    return [
        {
            "apiVersion": "serving.inferops.dev/v1alpha1",
            "kind": "AIApplication",
            "metadata": {"name": "large-answers", "namespace": namespace},
            "spec": {"versions": [version]},
        },
        {
            "apiVersion": "serving.inferops.dev/v1alpha1",
            "kind": "BatchService",
            "metadata": {"name": "large-answers", "namespace": namespace},
            "spec": {
                "application": "large-answers",
                "version": "1.0.0",
                "inputPath": f"s3://{BUCKET}/large/input.manifest",
                "outputPath": f"s3://{BUCKET}/large/output/",
                "specification": "cpu.2u4g",
                "concurrency": 4,
                "storage": {
                    "endpoint": "http://minio.storage.svc:9000",
                    "secretRef": {"name": "object-storage"},
                },
            },
        },
    ]


def test_large_model_answers_keep_the_worker_within_its_memory_limit(
    operator: Operator,
    kubectl: Kubectl,
    api_client: Any,
    object_store: NodeS3,
    storage_secret: str,
) -> None:
    ns = operator.apps
    s3 = fresh_buckets(object_store, BUCKET)
    sources = [f"s3://{BUCKET}/large/input/{i}.png" for i in range(3)]
    for source in sources:
        s3.put_object(Bucket=BUCKET, Key=source.split("/", 3)[3], Body=b"png")
    s3.put_object(
        Bucket=BUCKET,
        Key="large/input.manifest",
        Body="".join(json.dumps({"source": s}) + "\n" for s in sources).encode(),
    )
    apply_objects(kubectl, ns, large_answer_objects(ns))
    try:
        status = wait_phase(
            api_client, ns, "batchservices", "large-answers", ("Completed", "Failed"), 400
        )
        assert status["phase"] == "Completed", f"{status}\n{pods_report(api_client, ns)}"
        assert status["progress"] == {"total": 3, "succeeded": 0, "failed": 3}, status
        [manifest] = status["outputManifests"]
        lines = [json.loads(line) for line in read_s3(s3, manifest).splitlines()]
        assert {line["error_message"] for line in lines} == {
            "the model's answer is larger than the 16777216-byte limit (maxResponseBytes)"
        }
        pods = client.CoreV1Api(api_client).list_namespaced_pod(ns, label_selector="job-name").items
        [pod] = [p for p in pods if p.metadata.labels["job-name"].startswith("large-answers")]
        [worker] = [c for c in pod.status.container_statuses if c.name == "worker"]
        assert worker.restart_count == 0 and worker.state.terminated.reason == "Completed"
    finally:
        kubectl("delete", "-n", ns, "bs,aiapp", "large-answers", "--ignore-not-found")
