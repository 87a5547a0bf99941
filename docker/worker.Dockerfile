# The worker image: PyTorch (the CUDA build of the pinned torch) and the built-in trainers.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hpsearch hpsearch
COPY api api
COPY workers workers
COPY migrations migrations
RUN pip install --no-cache-dir ".[worker]"
CMD ["hpsearch", "worker", "--keep-alive"]
