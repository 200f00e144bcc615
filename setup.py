import os
import sys

from setuptools import Extension, setup

# FASTEXEC_SANITIZE=1 builds the extension with AddressSanitizer and
# UndefinedBehaviorSanitizer (see README, "Sanitizer build").
# FASTEXEC_DEBUG=1 builds without optimisation and with assertions on.
extra_compile_args = ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                      "-Wno-missing-field-initializers", "-Wno-cast-function-type"]
extra_link_args = []
undef_macros = []
if os.environ.get("FASTEXEC_DEBUG"):
    extra_compile_args += ["-O0", "-g3"]
    undef_macros.append("NDEBUG")
else:
    extra_compile_args += ["-O2"]
if os.environ.get("FASTEXEC_SANITIZE"):
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    extra_compile_args += san + ["-g", "-O1"]
    extra_link_args += san
    undef_macros.append("NDEBUG")

# A sanitizer or debug build gets a build directory of its own, so that
# setuptools never reuses objects compiled with other flags.
options = {}
if os.environ.get("FASTEXEC_SANITIZE"):
    options = {"build": {"build_base": "build/sanitize"}}
elif os.environ.get("FASTEXEC_DEBUG"):
    options = {"build": {"build_base": "build/debug"}}

if sys.platform == "win32":
    raise SystemExit("fastexec-bridge needs a POSIX system (pthreads)")

setup(
    options=options,
    ext_modules=[
        Extension(
            "fastexec._fastexec",
            sources=["src/_fastexec.c", "src/pool.c", "src/core.c", "src/spin.c",
                     "src/fork.c", "src/mapiter.c", "src/future.c",
                     "src/bridge.c", "src/job.c"],
            depends=[os.path.join("src", f) for f in os.listdir("src") if f.endswith(".h")],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
            undef_macros=undef_macros,
            libraries=["pthread"],
        )
    ],
)
