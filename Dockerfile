# One image for every fleetwall role: `control-plane`, `agent`, or any CLI command.
# The compiled BPF objects (bpf/obj) are committed, so no compiler is needed here.
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 iproute2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/fleetwall
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY bin bin
COPY bpf/obj bpf/obj
COPY common common
COPY proto proto
COPY control-plane control-plane
COPY node-agent node-agent
COPY cli cli
ENTRYPOINT ["node", "bin/fleetwall.mjs"]
CMD ["--help"]
