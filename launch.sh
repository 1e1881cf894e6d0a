#!/usr/bin/env bash
# gan_jax launcher.
#
#   ./launch.sh setup                                          # .venv with gan_jax[all] (JAX_EXTRA=tpu|cuda12 adds jax[...])
#   ./launch.sh run MODULE [flags...]                           # python -m MODULE on this machine
#   ./launch.sh tpu-setup TPU_NAME ZONE [--repo=URL | --copy]   # put the code on every TPU VM worker and install it
#   ./launch.sh tpu TPU_NAME ZONE MODULE [flags...]             # run MODULE on every worker (adds --distributed)
#   ./launch.sh tpu-logs TPU_NAME ZONE                          # follow process 0's console
#   ./launch.sh --dry-run <command> ...                         # print the commands instead of running them
#
# Environment: VENV (default .venv), PYTHON (default python3), JAX_EXTRA, TPU_PROJECT (gcloud --project),
# TPU_REPO_DIR (the checkout on the workers, default gan_jax in the remote home); GAN_JAX_IDX_DIR and
# TFDS_DATA_DIR are passed on to the workers when set.
set -euo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY_RUN=1
  shift
fi

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TPU_REPO_DIR="${TPU_REPO_DIR:-gan_jax}"
REMOTE_LOG="gan_jax_console.log"

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
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

# gcloud compute tpus tpu-vm <verb> with the zone, the project and the given workers.
gcloud_tpu() {
  local verb="$1" tpu_name="$2" zone="$3" worker="$4"
  shift 4
  local args=(gcloud compute tpus tpu-vm "${verb}")
  [[ "${verb}" == ssh ]] && args+=("${tpu_name}")
  args+=("$@" --zone="${zone}" --worker="${worker}")
  [[ -n "${TPU_PROJECT:-}" ]] && args+=(--project="${TPU_PROJECT}")
  execute "${args[@]}"
}

# The environment the workers need, as a quoted prefix of the remote command.
remote_env() {
  local name
  for name in GAN_JAX_IDX_DIR TFDS_DATA_DIR; do
    if [[ -n "${!name:-}" ]]; then
      printf '%s=%q ' "${name}" "${!name}"
    fi
  done
}

cmd_tpu_setup() {
  [[ $# -ge 2 && $# -le 3 ]] || usage
  local tpu_name="$1" zone="$2" source="${3:---copy}"
  local install
  install="cd $(printf '%q' "${TPU_REPO_DIR}") && JAX_EXTRA=tpu ./launch.sh setup"
  case "${source}" in
    --repo=*)
      local repo="${source#--repo=}"
      gcloud_tpu ssh "${tpu_name}" "${zone}" all --command="$(printf 'git clone %q %q || git -C %q pull --ff-only' \
          "${repo}" "${TPU_REPO_DIR}" "${TPU_REPO_DIR}") && ${install}"
      ;;
    --copy)
      # The working tree as git sees it (tracked and untracked files, nothing ignored such as .venv).
      local archive="/tmp/gan_jax_code.tar.gz"
      if [[ "${DRY_RUN}" == 1 ]]; then
        printf 'git -C %q ls-files -z --cached --others --exclude-standard | tar -C %q --null -T - -czf %q\n' \
            "${ROOT}" "${ROOT}" "${archive}"
      else
        git -C "${ROOT}" ls-files -z --cached --others --exclude-standard | tar -C "${ROOT}" --null -T - -czf "${archive}"
      fi
      gcloud_tpu scp "${tpu_name}" "${zone}" all "${archive}" "${tpu_name}:gan_jax_code.tar.gz"
      gcloud_tpu ssh "${tpu_name}" "${zone}" all --command="$(printf 'mkdir -p %q && tar -xzf gan_jax_code.tar.gz -C %q' \
          "${TPU_REPO_DIR}" "${TPU_REPO_DIR}") && ${install}"
      ;;
    *) usage ;;
  esac
}

cmd_tpu() {
  [[ $# -ge 3 ]] || usage
  local tpu_name="$1" zone="$2"
  shift 2
  local args=("$@")
  [[ " ${args[*]} " == *" --distributed "* ]] || args+=(--distributed)
  # Every worker runs the same command; each keeps its console in ~/REMOTE_LOG (tpu-logs reads worker 0's).
  local remote
  remote="set -o pipefail; cd $(printf '%q' "${TPU_REPO_DIR}") && $(remote_env)./launch.sh run $(printf '%q ' "${args[@]}")2>&1 | tee ~/${REMOTE_LOG}"
  gcloud_tpu ssh "${tpu_name}" "${zone}" all --command="${remote}"
}

cmd_tpu_logs() {
  [[ $# -eq 2 ]] || usage
  gcloud_tpu ssh "$1" "$2" 0 --command="tail -n 200 -F ~/${REMOTE_LOG}"
}

case "${1:-}" in
  setup) shift; cmd_setup "$@" ;;
  run) shift; cmd_run "$@" ;;
  tpu-setup) shift; cmd_tpu_setup "$@" ;;
  tpu) shift; cmd_tpu "$@" ;;
  tpu-logs) shift; cmd_tpu_logs "$@" ;;
  *) usage ;;
esac
