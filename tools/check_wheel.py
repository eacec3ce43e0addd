"""cibuildwheel's test: load the installed wheel's compiled module (without importing torch,
which musllinux lacks) and run one small transform."""

import glob
import importlib.util
import sysconfig

import numpy as np

path = glob.glob(sysconfig.get_paths()["platlib"] + "/supermel/_native_ext*")[0]
spec = importlib.util.spec_from_file_location("supermel._native_ext", path)
ext = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ext)
plan = ext.Plan(8, np.ones(8), np.zeros((0, 0)), "float64", "float64", 2.0, 0.0, 0, 0.0, 0.0)
x = np.arange(16.0).reshape(2, 8)
out = np.empty((2, 5, 2))
plan.rfft(x, out)
assert np.allclose(out[..., 0] + 1j * out[..., 1], np.fft.rfft(x)), "wrong FFT"
print("supermel._native_ext", ext.isa(), "ok")
