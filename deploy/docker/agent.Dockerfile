# Herd's agent: nothing but its static binary. Build context: a release
# directory (`make release`, then dist/linux_amd64), so nothing is pulled.
#
# The agent starts the replicas through the host's Docker engine, so it
# needs the engine's socket, and the host's network (gossip, and the
# replicas' published ports on --host-ip):
#
#   docker run -d --name herd-agent --network host --restart unless-stopped \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /var/lib/herd:/var/lib/herd \
#     -e HERD_ENCRYPT=<key> -e HERD_JOIN=10.0.0.1:7946 -e HERD_ADVERTISE=10.0.0.11 \
#     herd/agent join --replicas 12
#
# Anyone who can use the socket is root on the host: mount it only here.
# The replicas are the engine's containers, not the agent's children, so
# they keep running while the agent container restarts (it adopts them).
FROM scratch
COPY agent /usr/local/bin/agent
ENV HERD_DATA_DIR=/var/lib/herd HERD_RUNTIME=docker
VOLUME ["/var/lib/herd"]
EXPOSE 7071 7946 7946/udp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/agent"]
CMD ["join"]
