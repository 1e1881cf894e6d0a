#!/usr/bin/env bash
# gan_jax launcher.
#
#   ./launch.sh setup                                   # .venv with gan_jax[all]
#   ./launch.sh run MODULE [flags...]                    # python -m MODULE on this machine
#   ./launch.sh tpu TPU_NAME ZONE MODULE [flags...]      # same command on every TPU VM worker
#   ./launch.sh --dry-run <command> ...                  # print the commands instead of running them
#
# Environment: VENV (default .venv), PYTHON (default python3), JAX_EXTRA (setup installs
# jax[$JAX_EXTRA], e.g. tpu or cuda12), GAN_JAX_IDX_DIR (offline data), TPU_REPO_DIR (checkout
# on the TPU workers, default ~/gan_jax), TPU_PROJECT (gcloud --project).
set -euo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY_RUN=1
  shift
fi

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Prints a command quoted so it can be pasted back into a shell; runs it unless --dry-run.
execute() {
  if [[ "${DRY_RUN}" == 1 ]]; then
    printf '%q ' "$@"
    printf '\n'
  else
    "$@"
  fi
}

cmd_setup() {
  execute "${PYTHON}" -m venv "${ROOT}/${VENV}"
  execute "${ROOT}/${VENV}/bin/pip" install --upgrade pip
  execute "${ROOT}/${VENV}/bin/pip" install -e "${ROOT}[all]"
  if [[ -n "${JAX_EXTRA:-}" ]]; then
    execute "${ROOT}/${VENV}/bin/pip" install "jax[${JAX_EXTRA}]"
  fi
}

cmd_run() {
  [[ $# -ge 1 ]] || usage
  local python="${ROOT}/${VENV}/bin/python"
  [[ -x "${python}" || "${DRY_RUN}" == 1 ]] || { echo "launch.sh: no ${VENV}; run './launch.sh setup' first" >&2; exit 1; }
  cd "${ROOT}"
  execute "${python}" -m "$@"
}

cmd_tpu() {
  [[ $# -ge 3 ]] || usage
  local tpu_name="$1" zone="$2"
  shift 2
  local repo_dir="${TPU_REPO_DIR:-~/gan_jax}"
  local remote
  remote="cd ${repo_dir} && ./launch.sh run $(printf '%q ' "$@")"
  local gcloud=(gcloud compute tpus tpu-vm ssh "${tpu_name}" --zone="${zone}" --worker=all)
  [[ -n "${TPU_PROJECT:-}" ]] && gcloud+=(--project="${TPU_PROJECT}")
  execute "${gcloud[@]}" --command="${remote}"
}

case "${1:-}" in
  setup) shift; cmd_setup "$@" ;;
  run) shift; cmd_run "$@" ;;
  tpu) shift; cmd_tpu "$@" ;;
  *) usage ;;
esac
