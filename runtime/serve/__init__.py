"""The thin server: KServe v2 over HTTP with dynamic batching (`onebyone serve`), and Triton model repositories for
scale-out (`onebyone triton-repo`)."""
