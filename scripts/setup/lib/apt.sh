# Sourced by the setup scripts that install one Debian package: `apt_install PACKAGE`.
# (Under lib/, so `make services`, which runs scripts/setup/[0-9]*.sh, does not run it alone.)

apt_install() {
    local package=$1
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""  # global: the EXIT trap below reads it after this function returns
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    if ! apt-cache show "$package" >/dev/null 2>&1; then
        $SUDO apt-get update -q
    fi
    # The package's own service is not needed (the tests run its binary in the foreground with
    # their own config); policy-rc.d keeps the postinst from starting it where invoke-rc.d applies.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $SUDO apt-get install -y -q --no-install-recommends "$package"
}
