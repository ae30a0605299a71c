#!/usr/bin/env bash
# The system packages the tests need, shared by `npm test` (scripts/test.ts) and .ci/run.
# Checks what is there (quick: no apt call when everything is present); as root on Debian it
# installs what is missing, otherwise it stops naming the packages. Idempotent.
#   bash scripts/system-packages.sh            check, install what is missing when it can
#   bash scripts/system-packages.sh --check    check only, never install
# Exit 0: everything present. Exit 1: something is missing (the message names the packages).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

check_only=0
[ "${1:-}" = "--check" ] && check_only=1

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

# One line per package: "<package> <why>", for the ones whose command is absent.
missing_packages() {
  # iproute2: `ip netns` / veth for the multi-host tests.
  have ip || echo "iproute2 ip netns for the multi-host tests"
  # nftables: one-way (asymmetric) partitions in the namespace lab.
  have nft || echo "nftables one-way partitions in the namespace lab"
  # util-linux: setpriv/runuser start PostgreSQL tools as the postgres OS user.
  { have setpriv && have runuser; } || echo "util-linux setpriv/runuser run tools as the postgres user"
  # haproxy: the load-balancer test routes through HAProxy with pgherd's health checks.
  have haproxy || echo "haproxy the HAProxy test of the health checks"
  # chromium: the dashboard's browser test drives Chromium with playwright-core.
  have chromium || echo "chromium the dashboard's browser test"
  # openssl: the replication TLS tests check pgherd's certificates with an independent X.509 implementation.
  have openssl || echo "openssl the replication TLS tests (openssl verify, s_client)"
  # systemd: `systemd-analyze verify` of deploy/pgherd.service (only the tool; nothing is booted).
  have systemd-analyze || echo "systemd systemd-analyze verify of the unit file"
  # pgpool2, iputils-arping: test/integrations/{pgpool,vip}.e2e; python3-*: check_patroni's dependencies (vendored, run by Debian's python3).
  have pgpool || echo "pgpool2 pgpool-II in front of a cluster"; have arping || echo "iputils-arping the virtual IP's gratuitous ARP"; [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import nagiosplugin, requests, click, attr' 2>/dev/null || printf '%s\n' "python3-nagiosplugin check_patroni's Nagios plugin library" "python3-requests check_patroni's HTTP client" "python3-click check_patroni's CLI" "python3-attr check_patroni's attrs"
  have tcpdump || echo "tcpdump the virtual IP test's capture of the gratuitous ARP"
  have etcd || echo "etcd-server the etcd consensus backend tests (a three-member etcd)"
  have etcdctl || echo "etcd-client etcdctl: the etcd state test reads and writes the keys as an operator would"
  have pgbackrest || echo "pgbackrest continuous archiving, backups and clones from the backup repository"
  # PostgreSQL server, whatever major version the distribution ships (the product discovers it),
  # and the postgres OS user its package creates.
  if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || ! getent passwd postgres >/dev/null; then
    echo "postgresql the PostgreSQL server and the postgres OS user"
  fi
}

report() {
  echo "missing system packages the tests need:" >&2
  printf '%s\n' "$1" | while read -r pkg why; do printf '  %-12s %s\n' "$pkg" "$why" >&2; done
}

missing=$(missing_packages)
[ -z "$missing" ] && exit 0

report "$missing"
[ "$check_only" = 1 ] && exit 1
cannot=()
[ "$(id -u)" = 0 ] || cannot+=("not root")
{ [ -r /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; } || cannot+=("not Debian")
if [ ${#cannot[@]} -gt 0 ]; then
  names=$(printf '%s\n' "$missing" | cut -d' ' -f1 | tr '\n' ' ')
  echo "cannot install them here (${cannot[*]}): install them (on Debian: apt-get install ${names% }), or run the tests as root on Debian" >&2
  exit 1
fi

packages=$(printf '%s\n' "$missing" | cut -d' ' -f1)
echo "installing: $(echo $packages)"
apt-get update -q
if printf '%s\n' "$packages" | grep -qx postgresql; then
  # Tests run their own instances: no distribution cluster listening on 5432 behind their back.
  apt-get install -y -q --no-install-recommends postgresql-common
  conf=/etc/postgresql-common/createcluster.conf
  sed -i 's/^#\?\s*create_main_cluster\s*=.*/create_main_cluster = false/' "$conf"
  grep -q '^create_main_cluster = false' "$conf" || echo 'create_main_cluster = false' >>"$conf"
fi
# shellcheck disable=SC2086 # one word per package
apt-get install -y -q --no-install-recommends $packages

still=$(missing_packages)
if [ -n "$still" ]; then
  report "$still"
  echo "still missing after apt-get install" >&2
  exit 1
fi
