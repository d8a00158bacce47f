#!/bin/bash
# No-op converges of the lab, interleaved: an older commit's roles, this checkout's roles with the
# converge gate off (make converge), and on (make converge-fast). Run on a converged lab
# (make lab-up LAB_WORKERS=3 && make converge). Prints one line per run; wall times in seconds.
#   bench/noop_converge.sh [OLD_REF] [ROUNDS]      e.g. bench/noop_converge.sh 28bc863 3
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OLD_REF=${1:-HEAD~1}
ROUNDS=${2:-3}
INV=${INVENTORY:-$ROOT/inventory/lab}
OUT=${BENCH_OUT:-/tmp/bench-noop}
mkdir -p "$OUT"
OLD_TREE=$OUT/old-tree
rm -rf "$OLD_TREE" && git worktree prune
git worktree add -f --detach "$OLD_TREE" "$OLD_REF" >/dev/null 2>&1
trap 'git -C "$ROOT" worktree remove --force "$OLD_TREE" >/dev/null 2>&1 || true' EXIT

old() { (cd "$OLD_TREE" && ANSIBLE_CONFIG=$OLD_TREE/ansible.cfg "$ROOT/.venv/bin/ansible-playbook" -i "$INV" site.yml); }
off() { ANSIBLE_CONFIG=$ROOT/ansible.cfg "$ROOT/.venv/bin/ansible-playbook" -i "$INV" site.yml; }
on()  { ANSIBLE_CONFIG=$ROOT/ansible.cfg "$ROOT/.venv/bin/ansible-playbook" -i "$INV" site.yml -e converge_gate_enabled=true; }
timed() {
  local what=$1 round=$2 start end rc=0
  start=$(date +%s.%N)
  "$what" > "$OUT/$what-$round.log" 2>&1 || rc=$?
  end=$(date +%s.%N)
  printf '%-4s round=%-5s rc=%s wall=%.1f %s\n' "$what" "$round" "$rc" "$(echo "$end - $start" | bc)" \
    "$(grep -A9 'PLAY RECAP' "$OUT/$what-$round.log" | grep -o 'changed=[0-9]*' | sort | uniq -c | tr -s ' ' | tr '\n' ' ')"
}
# Priming (not counted): the old tree fills its own controller wheelhouse, the gate records.
timed old prime; timed on prime
for round in $(seq 1 "$ROUNDS"); do timed old "$round"; timed off "$round"; timed on "$round"; done
