"""qis_firmware: host tooling behind `qis-device` (flash, deploy, provision, monitor, emulate).

How it works: each third-party tool is touched by exactly one adapter module, and everything else is
plain planning code that can be tested without hardware:

    chips.py             chip table (flash offsets, modes) and firmware image header checks  (pure)
    esptool_adapter.py   the only module importing esptool: builds, prints and runs invocations
    flash.py             `qis-device flash`: chip choice, image check, rp2 UF2 instructions
    mpy.py               the only module running mpy-cross: compile to .mpy at a bytecode version
    deploy.py            `qis-device deploy`: file plan, hash manifest, changed-only copy
    targets.py           deploy targets: a board over mpremote, or `emulated:DIR` (a directory)
    mpremote_adapter.py  the only module importing mpremote
    serialport.py        the only module importing pyserial: port checks and the console monitor
    provision.py         `qis-device provision`: registry entry + device.json in one step
    config.py            required-field check of device.json (docs/device.md)
    cli.py               argparse front end (`qis-device`)
    emulate.py           `qis-device emulate` (the device engineer's): run board code on the unix port
    tools.py             the external tools each command needs, checked before anything starts
    board/               main.py and boot.py: the board's entry scripts, copied as source by deploy

Exception tree (errors.py):

    FirmwareError(Exception)
    +-- UsageError               impossible request on the command line (exit code 2)
    +-- IncompleteInstall        this install lacks the board's main.py/boot.py (exit code 2)
    +-- MissingTool              an external tool is not installed; says how to get it (exit code 2)
    +-- PortError
    |   +-- NoSuchPort           the port does not exist (lists the ports that do; exit code 2)
    |   +-- PortPermissionDenied the port exists but is not ours (dialout group hint; exit code 2)
    +-- NotMicroPython           something answers, but no MicroPython raw REPL
    +-- BytecodeMismatch         board .mpy version vs compiler / --mpy-version (exit code 2)
    +-- ConfigError              device.json missing or lacking required fields (exit code 2)
    +-- FirmwareImageMismatch    the image header names another chip (exit code 2)
    +-- ToolError                esptool / mpremote / mpy-cross failed otherwise
    +-- ProvisionError           registry refused (duplicate id) or is unavailable
"""

__version__ = "0.1.0"
