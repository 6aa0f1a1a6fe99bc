# Herd's gateway: nothing but its static binary. Build context: a release
# directory (`make release`, then dist/linux_amd64), so nothing is pulled.
#
#   docker run -d --name herd-gateway --network host --restart unless-stopped \
#     -v /var/lib/herd:/var/lib/herd \
#     -e HERD_ENCRYPT=<key> -e HERD_TOKEN=<token> -e HERD_ADMIN=10.0.0.1:7070 \
#     herd/gateway
#
# --network host: gossip (7946 TCP+UDP) must be reachable at the address the
# gateway advertises, and the admin API and traffic ports are the host's.
FROM scratch
COPY gateway /usr/local/bin/gateway
ENV HERD_DATA_DIR=/var/lib/herd
VOLUME ["/var/lib/herd"]
EXPOSE 80 7070 7946 7946/udp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["run"]
