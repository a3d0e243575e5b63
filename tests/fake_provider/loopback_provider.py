"""Ray's fake multi-node node provider with a Ray temp dir of its own for every node.

Ray's ``FakeMultiNodeProvider`` starts each node with the head's temp dir, so all nodes
share one ``runtime_resources`` folder: one node's runtime env agent then removes or
replaces the unpacked ``working_dir`` that a job driver on another node runs in (seen as
the driver's working directory vanishing mid-job). Real nodes have disks of their own;
here each node gets a folder under ``provider.node_temp_root``.

The autoscaler of tests/autoscale_cluster.py loads this class by module path (provider
``type: external``); this folder, and nothing else of the repository, is on the head's
PYTHONPATH for that.
"""
import os
import tempfile

import ray._private.parameter as parameter
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider


class OwnTempDirFakeProvider(FakeMultiNodeProvider):
    def _create_node_with_resources_and_labels(self, node_config, tags, count, resources,
                                               labels):
        root = self.provider_config["node_temp_root"]
        os.makedirs(root, exist_ok=True)
        temp_dir = tempfile.mkdtemp(prefix="n", dir=root)
        ray_params = parameter.RayParams

        def with_temp_dir(**kw):
            kw.setdefault("temp_dir", temp_dir)
            return ray_params(**kw)

        # Ray's method builds the node's RayParams through this module attribute.
        with self.lock:
            parameter.RayParams = with_temp_dir
            try:
                super()._create_node_with_resources_and_labels(node_config, tags, count,
                                                               resources, labels)
            finally:
                parameter.RayParams = ray_params
