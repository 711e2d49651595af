# qis-edge boot.py: runs first on every reset and must return. Keep it minimal: a GC threshold so the
# heap is collected before it fragments (tve/mqboard does the same). WiFi, the watchdog and the loop
# start in main.py -> qis_device.main().
import gc

gc.collect()
try:
    gc.threshold(gc.mem_free() // 4 + gc.mem_alloc())
except AttributeError:
    pass
