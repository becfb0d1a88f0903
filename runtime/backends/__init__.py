"""Session backends, one module each, imported only when a session of that kind is opened.

`tensorrt_backend` is the only module that imports `tensorrt`; `cuda_memory` the only one that allocates device
memory (pycuda). Nothing else in onebyone knows TensorRT exists.
"""
