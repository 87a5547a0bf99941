# The server image: FastAPI, SQLAlchemy, Alembic, psycopg. No torch.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hpsearch hpsearch
COPY api api
COPY workers workers
COPY migrations migrations
RUN pip install --no-cache-dir ".[server]"
EXPOSE 8765
CMD ["hpsearch", "server"]
