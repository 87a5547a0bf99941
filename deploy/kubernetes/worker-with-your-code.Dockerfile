# Your training code on the worker image: build, push, and name it in kustomization.yaml
# (images: hpsearch-worker) and worker-job.yaml.
#
#   docker build -f docker/worker.Dockerfile -t registry.internal/hpsearch-worker:0.1.0 .
#   docker build -f deploy/kubernetes/worker-with-your-code.Dockerfile \
#       -t registry.internal/my-project-worker:1.0 /path/to/my-project
FROM registry.internal/hpsearch-worker:0.1.0
WORKDIR /work
# Your project: a package with a train(trial) function, or a script that takes its
# hyperparameters as flags (docs/workers.md, "Bring your own code").
COPY . /work
RUN pip install --no-cache-dir -e /work
# Workers run only the code their command line allows: a function...
CMD ["hpsearch", "worker", "--server", "http://hpsearch-api:8765", "--device", "cuda", \
     "--keep-alive", "--allow", "mypkg.train:train"]
# ...or a command: "--allow-command", "python train.py"
