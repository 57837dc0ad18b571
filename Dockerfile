# dnspacer agent image: the BPF object and the libbpf addon are compiled in the build
# stage; the runtime stage holds Node.js 20, libbpf1, iproute2, iptables (nft and legacy)
# and the built app, nothing else. Both stages build on Debian bookworm, the distribution
# whose libbpf the addon is compiled against.
#   podman build -t dnspacer .          (or docker build)
# Where no registry is reachable, pass local stand-ins (test/container/base-images.sh):
#   --build-arg BASE=localhost/dnspacer-debian:bookworm --build-arg NODE=localhost/dnspacer-node:20
ARG BASE=debian:bookworm-slim
ARG NODE=node:20-bookworm-slim

FROM ${NODE} AS node

FROM ${BASE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      clang llvm libbpf-dev linux-libc-dev make g++ gcc python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
COPY --from=node /usr/local/include/node /usr/local/include/node
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
WORKDIR /src
COPY package.json package-lock.json ./
# dependency install scripts are not needed: the addon is built below, from our sources.
# Behind a TLS-inspecting proxy, pass its CA bundle: --secret id=ca,src=/path/to/bundle.crt
RUN --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca; fi \
 && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
COPY tsconfig.json ./
COPY bpf bpf
COPY native native
COPY src src
RUN make -C bpf dnspacer.bpf.o \
 && npx node-gyp rebuild -C native --nodedir=/usr/local \
 && npx tsc -p tsconfig.json \
 && npm prune --omit=dev --ignore-scripts --loglevel=error

FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libbpf1 libstdc++6 iproute2 iptables \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
WORKDIR /opt/dnspacer
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/bpf/dnspacer.bpf.o ./bpf/
COPY --from=build /src/native/build/Release/dnspacer_native.node ./native/build/Release/
ENTRYPOINT ["node", "/opt/dnspacer/dist/cli.js", "agent"]
