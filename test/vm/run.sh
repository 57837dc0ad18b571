#!/usr/bin/env bash
# The VM tier: boots each stock kernel in test/vm/kernels under qemu (TCG; this machine's
# KVM cannot run a stock kernel) with the host's root shared read-only, runs the root test
# suites and a short lab matrix inside, and fails if any kernel fails or hangs.
# Usage: test/vm/run.sh [kernel-id...]      Env: DNSPACER_VM_JOB overrides the guest command,
#        DNSPACER_VM_TIMEOUT (seconds per kernel, default 900), DNSPACER_VM_RUNS (results folder).
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
timeout_s=${DNSPACER_VM_TIMEOUT:-900}
job=${DNSPACER_VM_JOB:-'npx vitest run test/root --reporter=default --reporter=json --outputFile.json="$DNSPACER_RESULTS/report.json"'}
wanted=("$@")
status=0
summary=()

while read -r id pkg ver; do
  [[ -z $id || $id == \#* ]] && continue
  if ((${#wanted[@]})) && [[ ! " ${wanted[*]} " =~ " $id " ]]; then continue; fi
  dir=$("$repo/test/vm/prepare.sh" "$pkg" "$ver") || { summary+=("$id: FAILED to prepare"); status=1; continue; }
  source "$dir/kernel.env"
  results=${DNSPACER_VM_RUNS:-$repo/.cache/vm/runs}/$id
  rm -rf "$results" && mkdir -p "$results"
  cp "$repo/test/vm/guest.sh" "$results/guest.sh"
  {
    printf 'export DNSPACER_REPO=%q\n' "$repo"
    printf 'export DNSPACER_RESULTS=%q\n' "$results"
    printf 'export DNSPACER_KERNEL_TIER=%q\n' "$id"
    printf 'DNSPACER_JOB=%q\n' "$job"
  } >"$results/job.env"

  echo "test/vm: booting $id ($release), timeout ${timeout_s}s"
  start=$SECONDS
  timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
    -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
    -nographic -no-reboot -serial "file:$results/console.log" -monitor none \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 quiet panic=-1 dnspacer.results=$results dnspacer.modules=$modules" \
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
    -virtfs "local,path=$results,mount_tag=results,security_model=none" \
    </dev/null >"$results/qemu.log" 2>&1 &
  qemu=$!
  # follow the guest's output while it runs; tail ends by itself once qemu has gone
  touch "$results/output.log"
  tail -n +1 -f --pid="$qemu" "$results/output.log" &
  tailer=$!
  wait "$qemu"; rc=$?
  wait "$tailer"
  took=$((SECONDS - start))

  if [[ $rc == 124 || $rc == 137 ]]; then
    summary+=("$id ($release): HUNG, killed after ${timeout_s}s; see $results/console.log")
    status=1
  elif [[ ! -f $results/exit ]]; then
    summary+=("$id ($release): no result (qemu exit $rc); see $results/console.log and qemu.log")
    status=1
  elif [[ $(cat "$results/exit") != 0 ]]; then
    summary+=("$id ($release): FAILED (exit $(cat "$results/exit")) in ${took}s; see $results/output.log")
    status=1
  else
    summary+=("$id ($release): passed in ${took}s")
  fi
done <"$repo/test/vm/kernels"

echo
echo "test/vm summary:"
printf '  %s\n' "${summary[@]}"
exit $status
