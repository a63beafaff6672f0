"""Regenerates the reference .npy/.npz files used by NumPyIOTests.

Run from this directory with numpy 2.x:  python3 generate.py
The tests hard-code the values written here, so keep them in sync.
"""
import numpy as np
from numpy.lib import format as fmt

def save(name, arr, version=None):
    with open(name, "wb") as f:
        if version is None:
            np.save(f, arr)
        else:
            fmt.write_array(f, arr, version=version)

# C-order, little-endian, one file per supported dtype.
save("f64_2x3.npy", np.array([[-1.0, -0.5, 0.0], [0.5, 1e300, -2.5e-300]], dtype="<f8"))
save("f32_3.npy", np.array([1.5, -2.25, 0.1], dtype="<f4"))
save("i64_2x2.npy", np.array([[1, -2], [2**40, -2**62]], dtype="<i8"))
save("i32_4.npy", np.array([0, -1, 2**31 - 1, -2**31], dtype="<i4"))
save("i16_3.npy", np.array([-32768, 0, 32767], dtype="<i2"))
save("i8_3.npy", np.array([-128, 0, 127], dtype="i1"))
save("u8_2x2.npy", np.array([[0, 1], [254, 255]], dtype="u1"))
save("bool_3.npy", np.array([True, False, True]))
save("scalar_f64.npy", np.array(3.25))
save("empty_0x5.npy", np.zeros((0, 5)))
# Fortran order (numpy writes fortran_order: True for F-contiguous arrays).
save("fortran_f64_2x3x4.npy", np.asfortranarray(np.arange(24, dtype="<f8").reshape(2, 3, 4)))
save("fortran_i32_3x2.npy", np.asfortranarray(np.array([[1, 2], [3, 4], [5, 6]], dtype="<i4")))
# Big-endian dtypes (read and converted to little-endian).
save("be_f8_2x2.npy", np.array([[1.0, -2.0], [3.5, 1e-10]], dtype=">f8"))
save("be_i4_3.npy", np.array([1, -2, 70000], dtype=">i4"))
# Explicit header versions.
save("v2_f64_3.npy", np.array([1.0, 2.0, 3.0]), version=(2, 0))
save("v3_i64_2.npy", np.array([7, -8], dtype="<i8"), version=(3, 0))
# Unsupported dtypes.
save("unsupported_u16.npy", np.array([1, 2], dtype="<u2"))
save("unsupported_c16.npy", np.array([1 + 2j]))
with open("unsupported_object.npy", "wb") as f:
    np.save(f, np.array([None, "x"], dtype=object), allow_pickle=True)
save("unsupported_structured.npy", np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]))

# Archives: np.savez (stored) and np.savez_compressed (deflated).
a = np.array([[1.0, 2.0], [3.0, 4.0]])
b = np.arange(5, dtype="<i8")
c = np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3))
np.savez("savez.npz", a=a, b=b, c=c)
np.savez_compressed("savez_compressed.npz", a=a, b=b, c=c, zeros=np.zeros(200))
np.savez("savez_positional.npz", np.array(1.5), np.array([True, False]))
