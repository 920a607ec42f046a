"""ClientApp: a securefl node whose input is ``client_input(partition-id)``."""

from securefl.integrations.flower import Job, make_client_app
from securefl_deployment_test.inputs import client_input


def input_fn(job: Job):
    config = job.context.run_config
    return client_input(job.partition, length=job.vector_length, ring_bits=job.protocol.encoding.ring_bits,
                        seed=int(config["input-seed"]))


app = make_client_app(input_fn=input_fn)  # the protocol comes from the node config (securefl-protocol=...)
