/// The Python program `trove run NOTEBOOK` and `trove notebook check` run (Docs/runs.md §Notebooks):
/// nbformat + nbclient, papermill's parameter injection. Written to the run's live folder.
enum NotebookRunnerScript {
    static let source = #"""
# Trove notebook runner (embedded in Trove; see Docs/runs.md, Notebooks).
#
#   python3 runner.py run      NOTEBOOK OUT PARAMS_JSON_FILE
#   python3 runner.py check    NOTEBOOK [OUT|-] [PARAMS_JSON_FILE|-]
#   python3 runner.py validate NOTEBOOK
#
# run/check: read + validate the notebook (nbformat 4), inject parameters the way
# papermill does, execute every code cell top to bottom in a fresh kernel (nbclient),
# streaming outputs live, and write the executed notebook to OUT (always, also after a
# failing cell or SIGTERM/SIGINT).
#
# Exit codes: 0 ok; 1 a cell failed; 2 usage / bad parameters file / OUT not writable /
# internal error; 3 missing Python packages or kernel not installed / not startable;
# 4 not a valid notebook; 128+N stopped by signal N (SIGINT 130, SIGTERM 143).
import json
import os
import re
import signal
import sys
import threading
import time
from datetime import datetime, timezone

EXIT_OK = 0
EXIT_CELL_FAILED = 1
EXIT_USAGE = 2
EXIT_SETUP = 3
EXIT_INVALID = 4

# After SIGTERM/SIGINT the running cell is interrupted (SIGINT to the kernel, so the cell
# gets a KeyboardInterrupt and `finally:` blocks run); if it has not finished after this
# many seconds the kernel's process group is killed. Trove sends SIGKILL 10 s after SIGTERM.
INTERRUPT_GRACE_SECONDS = 3.0
# Save OUT after a cell if the last save is at least this old (always saved at the end).
AUTOSAVE_SECONDS = 5.0
TCP_WARNING = "Kernel is running over TCP without encryption"
ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT", signal.SIGHUP: "SIGHUP"}


class Abort(Exception):
    def __init__(self, code, message):
        Exception.__init__(self, message)
        self.code = code
        self.message = message


def err(message):
    try:
        sys.stderr.write("trove: " + message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def now_utc():
    return datetime.now(timezone.utc)


def strip_ansi(text):
    return ANSI_RE.sub("", text)


def json_safe(value):
    # NaN/Infinity are not JSON; keep the notebook file strict JSON.
    import math
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def joined(value):
    if isinstance(value, list):
        return "".join(value)
    return value if isinstance(value, str) else ""


# ---------------------------------------------------------------------------------------
# Packages

def check_packages(mode):
    import importlib.util
    missing = []
    for name in ("nbformat", "nbclient"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if mode in ("run", "check"):
        try:
            found = importlib.util.find_spec("ipykernel") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append("ipykernel")
    if missing:
        raise Abort(EXIT_SETUP, "notebooks need the Python packages: %s (missing). "
                    "Install them with: python3 -m pip install %s"
                    % (", ".join(missing), " ".join(missing)))


# ---------------------------------------------------------------------------------------
# Reading and validating

def read_notebook(path):
    import warnings
    import nbformat

    def invalid(reason):
        return Abort(EXIT_INVALID, "%s is not a valid notebook (nbformat 4): %s" % (path, reason))

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise invalid("cannot read it: %s" % (e.strerror or e))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid("not UTF-8 text (%s)" % e)
    try:
        data = json.loads(text)
    except ValueError as e:
        raise invalid("not JSON (%s)" % e)
    if not isinstance(data, dict):
        raise invalid("the top-level JSON value is not an object")
    if "nbformat" not in data:
        raise invalid("missing key 'nbformat'")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
            nbformat.validate(nb)
    except Exception as e:
        reason = getattr(e, "message", None) or str(e) or type(e).__name__
        reason = reason.strip().splitlines()[0] if reason.strip() else type(e).__name__
        instance = getattr(e, "instance", None)
        if isinstance(instance, (dict, list)) and repr(instance) in reason:
            reason = reason.replace(repr(instance), "the value")
        if len(reason) > 300:
            reason = reason[:300] + "..."
        path_parts = [str(p) for p in getattr(e, "absolute_path", []) or []]
        if path_parts:
            reason += " (at /%s)" % "/".join(path_parts)
        raise invalid(reason)
    return nb


def upgrade_notebook(nb):
    # To nbformat 4.5 (cell ids), like papermill; ids for cells that lack one.
    import nbformat
    try:
        upgraded = nbformat.v4.upgrade(nb)
        if upgraded is not None:
            nb = upgraded
    except Exception:
        pass
    try:
        from nbformat.corpus.words import generate_corpus_id as new_id
    except ImportError:
        import uuid

        def new_id():
            return uuid.uuid4().hex[:8]
    if nb.get("nbformat_minor", 0) >= 5:
        for cell in nb.cells:
            if not cell.get("id"):
                cell["id"] = new_id()
    return nb


# ---------------------------------------------------------------------------------------
# Parameters (papermill semantics)

def resolve_type(value):
    # papermill/cli.py _resolve_type, what `papermill -p NAME VALUE` does.
    if value == "True":
        return True
    elif value == "False":
        return False
    elif value == "None":
        return None
    elif _is_int(value):
        return int(value)
    elif _is_float(value):
        return float(value)
    else:
        return value


def _is_int(value):
    try:
        int(value)
    except ValueError:
        return False
    else:
        return True


def _is_float(value):
    try:
        float(value)
    except ValueError:
        return False
    else:
        return True


def load_parameters(path):
    if path in (None, "", "-"):
        return {}
    try:
        with open(path, "r", encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise Abort(EXIT_USAGE, "cannot read the parameters file %s: %s" % (path, e))
    if not isinstance(raw, dict):
        raise Abort(EXIT_USAGE, "the parameters file %s must hold a JSON object" % path)
    return {str(k): (resolve_type(v) if isinstance(v, str) else v) for k, v in raw.items()}


class PythonParams:
    # Same output as papermill.translators.PythonTranslator (used when papermill is absent).
    @classmethod
    def escaped_str(cls, val):
        if isinstance(val, str):
            val = val.encode("unicode_escape").decode("utf-8").replace('"', r'\"')
        return '"%s"' % (val,)

    @classmethod
    def translate(cls, val):
        import math
        if val is None:
            return str(val)
        if isinstance(val, str):
            return cls.escaped_str(val)
        if isinstance(val, bool):
            return str(val)
        if isinstance(val, int):
            return str(val)
        if isinstance(val, float):
            if math.isfinite(val):
                return str(val)
            if math.isnan(val):
                return "float('nan')"
            return "float('-inf')" if val < 0 else "float('inf')"
        if isinstance(val, dict):
            return "{%s}" % ", ".join("%s: %s" % (cls.escaped_str(k), cls.translate(v)) for k, v in val.items())
        if isinstance(val, list):
            return "[%s]" % ", ".join(cls.translate(v) for v in val)
        return cls.escaped_str(val)

    @classmethod
    def codify(cls, parameters, comment="Parameters"):
        content = ("# %s" % comment).strip() + "\n"
        for name, val in parameters.items():
            content += "%s = %s\n" % (name, cls.translate(val))
        try:
            import black
            content = black.format_str(content, mode=black.FileMode(string_normalization=False))
        except ImportError:
            pass
        except AttributeError:
            pass
        return content


def parameters_source(parameters, kernel_name, language):
    try:
        from papermill.translators import translate_parameters
    except Exception:
        translate_parameters = None
    if translate_parameters is not None:
        try:
            return translate_parameters(kernel_name, language, parameters, "Parameters")
        except Exception:
            pass
    if (language or "python").lower() not in ("python", "python3", "ipython"):
        raise Abort(EXIT_USAGE, "cannot inject parameters into a %s notebook without papermill "
                    "(python3 -m pip install papermill)" % language)
    return PythonParams.codify(parameters)


def declared_parameters(cell, kernel_name, language):
    try:
        from papermill.translators import papermill_translators
        return {p.name for p in papermill_translators.find_translator(kernel_name, language).inspect(cell)}
    except Exception:
        pass
    names = set()
    for line in joined(cell.get("source", "")).splitlines():
        m = re.match(r"^(\w+)\s*(?::[^=]*)?=(?!=)", line)
        if m:
            names.add(m.group(1))
    return names


def find_tagged(nb, tag):
    for index, cell in enumerate(nb.cells):
        if tag in cell.get("metadata", {}).get("tags", []):
            return index
    return -1


def inject_parameters(nb, parameters, kernel_name, language, notebook_path):
    import nbformat
    if not parameters:
        return nb
    source = parameters_source(parameters, kernel_name, language)
    cell = nbformat.v4.new_code_cell(source=source)
    cell.metadata["tags"] = ["injected-parameters"]
    injected = find_tagged(nb, "injected-parameters")
    tagged = find_tagged(nb, "parameters")
    if tagged >= 0:
        declared = declared_parameters(nb.cells[tagged], kernel_name, language)
        for name in parameters:
            if name not in declared:
                err("warning: parameter %r is not assigned in the notebook's parameters cell "
                    "(injected anyway)" % name)
    if injected >= 0:
        nb.cells = nb.cells[:injected] + [cell] + nb.cells[injected + 1:]
    elif tagged >= 0:
        nb.cells = nb.cells[:tagged + 1] + [cell] + nb.cells[tagged + 1:]
    else:
        err("warning: %s does not contain a cell with tag 'parameters'; "
            "the parameters are injected at the top" % notebook_path)
        nb.cells = [cell] + nb.cells
    return nb


# ---------------------------------------------------------------------------------------
# Execution

class Runner:
    def __init__(self, mode, notebook_path, out_path, params_path):
        self.mode = mode
        self.notebook_path = notebook_path
        self.out_path = None if out_path in (None, "", "-") else out_path
        self.params_path = params_path
        self.nb = None
        self.client = None
        self.phase = "prepare"  # prepare, start, cell, between, cleanup
        self.stop_signal = None
        self.kill_timer = None
        self.last_save = 0.0
        self.code_cells = 0
        self.executed = 0
        self.failure = None  # (index, cell id, "ENAME: EVALUE", traceback text)
        self.stderr_thread = None
        self.pgid = None  # the kernel's process group (it runs in a session of its own)
        # In check mode stdout carries only the final JSON line; cell output goes to stderr.
        self.out_stream = sys.stderr if mode == "check" else sys.stdout

    # -- signals ------------------------------------------------------------------------
    def kernel_pgid(self):
        if self.pgid is not None:
            return self.pgid
        client = self.client
        km = getattr(client, "km", None) if client is not None else None
        provisioner = getattr(km, "provisioner", None) if km is not None else None
        pgid = getattr(provisioner, "pgid", None) if provisioner is not None else None
        if pgid is None and provisioner is not None:
            pgid = getattr(provisioner, "pid", None)
        return pgid if isinstance(pgid, int) and pgid > 1 else None

    def signal_kernel(self, signum):
        pgid = self.kernel_pgid()
        if pgid is None:
            return False
        try:
            os.killpg(pgid, signum)
            return True
        except OSError:
            return False

    def on_signal(self, signum, frame):
        first = self.stop_signal is None
        if first:
            self.stop_signal = signum
        if self.phase == "cell":
            if first and self.interrupt_by_signal():
                # Graceful: KeyboardInterrupt in the cell, then kill if it does not stop.
                self.signal_kernel(signal.SIGINT)
                self.kill_timer = threading.Timer(INTERRUPT_GRACE_SECONDS, self.signal_kernel, (signal.SIGKILL,))
                self.kill_timer.daemon = True
                self.kill_timer.start()
            else:
                self.signal_kernel(signal.SIGKILL)
        elif self.phase == "start":
            self.signal_kernel(signal.SIGKILL)

    def interrupt_by_signal(self):
        km = getattr(self.client, "km", None)
        spec = getattr(km, "kernel_spec", None)
        return getattr(spec, "interrupt_mode", "signal") == "signal"

    def install_signal_handlers(self):
        for signum in SIGNAL_NAMES:
            signal.signal(signum, self.on_signal)

    # -- output -------------------------------------------------------------------------
    def echo(self, output):
        try:
            kind = output.get("output_type")
            if kind == "stream":
                stream = sys.stderr if output.get("name") == "stderr" else self.out_stream
                stream.write(joined(output.get("text", "")))
                stream.flush()
            elif kind == "execute_result":
                text = joined(output.get("data", {}).get("text/plain", ""))
                if text:
                    self.out_stream.write(text if text.endswith("\n") else text + "\n")
                    self.out_stream.flush()
        except (OSError, ValueError):
            pass

    def save(self, force=False):
        if self.out_path is None or self.nb is None:
            return
        if not force and time.monotonic() - self.last_save < AUTOSAVE_SECONDS:
            return
        import nbformat
        tmp = "%s.tmp-%d" % (self.out_path, os.getpid())
        try:
            nbformat.write(self.nb, tmp)
            os.replace(tmp, self.out_path)
        except Exception:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self.last_save = time.monotonic()

    # -- kernel -------------------------------------------------------------------------
    def kernel_names(self, notebook_kernel):
        meta = self.nb.metadata
        kernel_name = notebook_kernel or "python3"
        try:
            from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
        except ImportError:
            raise Abort(EXIT_SETUP, "notebooks need the Python packages: jupyter_client (missing). "
                        "Install them with: python3 -m pip install jupyter_client")
        ksm = KernelSpecManager()
        try:
            spec = ksm.get_kernel_spec(kernel_name)
        except NoSuchKernel:
            try:
                installed = sorted(ksm.find_kernel_specs())
            except Exception:
                installed = []
            raise Abort(EXIT_SETUP, "the notebook's kernel %r (metadata.kernelspec.name) is not installed "
                        "(installed kernels: %s). Install it (for a Python environment: python -m ipykernel "
                        "install --user --name %s) or change the notebook's kernel."
                        % (kernel_name, ", ".join(installed) or "none", kernel_name))
        language = (meta.get("kernelspec", {}).get("language")
                    or meta.get("language_info", {}).get("name")
                    or getattr(spec, "language", None) or "python")
        return kernel_name, language, spec

    def start_kernel(self, kernel_name, spec):
        import subprocess
        from nbclient import NotebookClient

        runner = self

        class StreamingClient(NotebookClient):
            def process_message(self, msg, cell, cell_index):
                output = NotebookClient.process_message(self, msg, cell, cell_index)
                if output is not None:
                    runner.echo(output)
                return output

        self.client = StreamingClient(self.nb, timeout=None, kernel_name=kernel_name,
                                      allow_errors=False, store_widget_state=True)
        km = self.client.create_kernel_manager()
        encrypted = False
        try:
            if km.has_trait("transport_encryption"):
                km.transport_encryption = "auto"  # CurveZMQ keys: no plain-TCP warning
                encrypted = True
        except Exception:
            encrypted = False
        argv = " ".join(getattr(spec, "argv", []) or [])
        is_ipykernel = "ipykernel" in argv
        kwargs = {}
        if is_ipykernel:
            # ipykernel forwards fd-level output (subprocesses, C code) to the notebook and
            # also echoes it on its own stdout; we already print the notebook's copy.
            kwargs["stdout"] = subprocess.DEVNULL
        if is_ipykernel and not encrypted:
            kwargs["stderr"] = subprocess.PIPE
        return kwargs

    def pump_kernel_stderr(self):
        km = getattr(self.client, "km", None)
        process = getattr(getattr(km, "provisioner", None), "process", None)
        pipe = getattr(process, "stderr", None)
        if pipe is None:
            return

        def pump():
            out = getattr(sys.stderr, "buffer", None)
            try:
                for line in iter(pipe.readline, b""):
                    if TCP_WARNING.encode() in line:
                        continue
                    try:
                        if out is not None:
                            out.write(line)
                        else:
                            sys.stderr.write(line.decode("utf-8", "replace"))
                        sys.stderr.flush()
                    except (OSError, ValueError):
                        pass
            except (OSError, ValueError):
                pass

        self.stderr_thread = threading.Thread(target=pump, daemon=True)
        self.stderr_thread.start()

    # -- papermill-like metadata -------------------------------------------------------
    def prepare_metadata(self, parameters):
        try:
            import papermill
            version = papermill.__version__
        except Exception:
            version = None
        pm = self.nb.metadata.get("papermill")
        if not isinstance(pm, dict):
            pm = {}
        pm.update({
            "default_parameters": pm.get("default_parameters", {}) if isinstance(pm.get("default_parameters"), dict) else {},
            "parameters": json_safe(parameters),
            "environment_variables": {},
            "version": version if parameters else pm.get("version", version),
            "input_path": self.notebook_path,
            "output_path": self.out_path,
            "start_time": now_utc().isoformat(),
            "end_time": None,
            "duration": None,
            "exception": None,
        })
        self.nb.metadata["papermill"] = pm
        for cell in self.nb.cells:
            if cell.get("cell_type") == "code":
                cell["execution_count"] = None
                cell["outputs"] = []
            cell.metadata["papermill"] = {"exception": None, "start_time": None, "end_time": None,
                                          "duration": None, "status": "pending"}

    def cell_started(self, cell):
        cell.metadata["papermill"].update({"start_time": now_utc().isoformat(), "status": "running",
                                           "exception": False})

    @staticmethod
    def stamp_end(pm):
        end = now_utc()
        pm["end_time"] = end.isoformat()
        try:
            pm["duration"] = (end - datetime.fromisoformat(pm["start_time"])).total_seconds()
        except Exception:
            pass

    def cell_finished(self, cell, failed):
        pm = cell.metadata["papermill"]
        self.stamp_end(pm)
        if failed:
            pm["status"] = "failed"
            pm["exception"] = True
            self.nb.metadata["papermill"]["exception"] = True
        else:
            pm["status"] = "completed"

    def notebook_finished(self):
        self.stamp_end(self.nb.metadata["papermill"])

    # -- main ---------------------------------------------------------------------------
    def run(self):
        parameters = load_parameters(self.params_path)
        self.nb = upgrade_notebook(read_notebook(self.notebook_path))
        # Error marker cells from an earlier papermill run are dropped, like papermill does.
        self.nb.cells = [c for c in self.nb.cells
                         if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
        notebook_kernel = self.nb.metadata.get("kernelspec", {}).get("name")
        kernel_name, language, spec = self.kernel_names(notebook_kernel)
        self.nb = inject_parameters(self.nb, parameters, kernel_name, language, self.notebook_path)
        self.prepare_metadata(parameters)
        self.code_cells = sum(1 for c in self.nb.cells if c.get("cell_type") == "code")
        try:
            self.save(force=True)
        except Exception as e:
            raise Abort(EXIT_USAGE, "cannot write %s: %s" % (self.out_path, getattr(e, "strerror", None) or e))

        exit_code = EXIT_OK
        if self.stop_signal is None:
            exit_code = self.execute(kernel_name, spec)
        self.notebook_finished()
        if self.stop_signal is not None:
            exit_code = 128 + self.stop_signal
            for cell in self.nb.cells:
                if cell.metadata["papermill"]["status"] == "running":
                    self.cell_finished(cell, failed=True)
        try:
            self.save(force=True)
        except Exception as e:
            err("could not write %s: %s" % (self.out_path, e))
            if exit_code == EXIT_OK:
                exit_code = EXIT_USAGE
        return exit_code

    def execute(self, kernel_name, spec):
        from nbclient.exceptions import CellExecutionError, DeadKernelError

        kwargs = self.start_kernel(kernel_name, spec)
        self.phase = "start"
        exit_code = EXIT_OK
        try:
            try:
                context = self.client.setup_kernel(**kwargs)
                context.__enter__()
            except Exception as e:
                self.cleanup_kernel()
                if self.stop_signal is not None:
                    return EXIT_OK
                raise Abort(EXIT_SETUP, "could not start the notebook's kernel %r: %s"
                            % (kernel_name, str(e).strip() or type(e).__name__))
            try:
                self.pgid = self.kernel_pgid()
                if kwargs.get("stderr") is not None:
                    self.pump_kernel_stderr()
                if self.stop_signal is None:
                    try:
                        info = self.client.wait_for_reply(self.client.kc.kernel_info())
                        self.nb.metadata["language_info"] = info["content"]["language_info"]
                    except Exception:
                        pass
                self.phase = "between"
                exit_code = self.execute_cells(CellExecutionError, DeadKernelError)
            finally:
                self.phase = "cleanup"
                if self.stop_signal is not None:
                    self.client.shutdown_kernel = "immediate"
                try:
                    context.__exit__(None, None, None)
                except Exception:
                    pass
        finally:
            self.phase = "cleanup"
            self.cleanup_kernel()
        return exit_code

    def execute_cells(self, CellExecutionError, DeadKernelError):
        for index, cell in enumerate(self.nb.cells):
            if self.stop_signal is not None:
                return EXIT_OK
            self.cell_started(cell)
            if cell.get("cell_type") != "code":
                self.cell_finished(cell, failed=False)
                continue
            failure = None
            self.phase = "cell"
            try:
                if self.stop_signal is None:
                    self.client.execute_cell(cell, index)
            except CellExecutionError as e:
                failure = (getattr(e, "ename", "") or "CellExecutionError", getattr(e, "evalue", "") or "")
            except DeadKernelError as e:
                failure = ("DeadKernelError", str(e) or "Kernel died")
            except Exception as e:
                failure = (type(e).__name__, str(e))
            finally:
                self.phase = "between"
                if self.kill_timer is not None:
                    self.kill_timer.cancel()
                    self.kill_timer = None
            self.executed += 1
            if self.stop_signal is not None:
                self.cell_finished(cell, failed=True)
                return EXIT_OK
            if failure is not None and failure[0] == "SystemExit" and failure[1] in ("", "0"):
                # papermill: sys.exit() / sys.exit(0) ends the notebook early, successfully.
                self.cell_finished(cell, failed=False)
                return EXIT_OK
            self.cell_finished(cell, failed=failure is not None)
            if failure is not None:
                self.record_failure(index, cell, failure)
                return EXIT_CELL_FAILED
            try:
                self.save()
            except Exception as e:
                err("could not write %s: %s" % (self.out_path, e))
        return EXIT_OK

    def record_failure(self, index, cell, failure):
        ename, evalue = failure
        traceback = ""
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                ename = output.get("ename") or ename
                evalue = output.get("evalue", evalue)
                traceback = "\n".join(output.get("traceback", []) or [])
                break
        self.failure = (index + 1, cell.get("id"), "%s: %s" % (ename, evalue), strip_ansi(traceback))

    def cleanup_kernel(self):
        client = self.client
        if client is None:
            return
        pgid = self.kernel_pgid()
        if getattr(client, "km", None) is not None:
            try:
                if self.stop_signal is not None:
                    client.shutdown_kernel = "immediate"
                client._cleanup_kernel()
            except BaseException:
                pass
        # Nothing of the kernel's session (its process group) outlives the notebook.
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        if self.stderr_thread is not None:
            self.stderr_thread.join(1.0)
            self.stderr_thread = None

    def report(self, exit_code):
        stopped = self.stop_signal is not None
        running = None
        if stopped:
            for index, cell in enumerate(self.nb.cells if self.nb is not None else []):
                if cell.metadata.get("papermill", {}).get("status") == "failed":
                    running = (index + 1, cell.get("id"))
            where = " during cell %d (id %s)" % running if running else ""
            err("notebook stopped by %s%s" % (SIGNAL_NAMES.get(self.stop_signal, self.stop_signal), where))
        elif self.failure is not None:
            n, cell_id, message, traceback = self.failure
            err("notebook cell %d (id %s) failed: %s" % (n, cell_id, message))
            if traceback.strip():
                try:
                    sys.stderr.write(traceback.rstrip("\n") + "\n")
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
        if self.mode == "check":
            failed_cell = self.failure[0] if self.failure else None
            cell_id = self.failure[1] if self.failure else None
            error = self.failure[2] if self.failure else None
            if stopped:
                error = "stopped by %s" % SIGNAL_NAMES.get(self.stop_signal, self.stop_signal)
                failed_cell, cell_id = running if running else (None, None)
            line = json.dumps({"ok": exit_code == EXIT_OK, "cells": self.code_cells, "executed": self.executed,
                               "failed_cell": failed_cell, "cell_id": cell_id, "error": error})
            try:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            except (OSError, ValueError):
                pass


USAGE = ("usage: runner.py run NOTEBOOK OUT PARAMS_JSON_FILE\n"
         "       runner.py check NOTEBOOK [OUT|-] [PARAMS_JSON_FILE|-]\n"
         "       runner.py validate NOTEBOOK")


def main(argv):
    if len(argv) < 2 or argv[0] not in ("run", "check", "validate"):
        sys.stderr.write(USAGE + "\n")
        return EXIT_USAGE
    mode, notebook = argv[0], argv[1]
    if mode == "run" and len(argv) != 4:
        sys.stderr.write(USAGE + "\n")
        return EXIT_USAGE
    if len(argv) > 4:
        sys.stderr.write(USAGE + "\n")
        return EXIT_USAGE
    out = argv[2] if len(argv) > 2 else "-"
    params = argv[3] if len(argv) > 3 else "-"
    if mode == "run" and out == "-":
        sys.stderr.write("runner.py run: OUT must be a file path\n")
        return EXIT_USAGE
    runner = None
    try:
        if mode != "validate":
            runner = Runner(mode, notebook, out, params)
            runner.install_signal_handlers()
        check_packages(mode)
        if mode == "validate":
            read_notebook(notebook)
            return EXIT_OK
        code = runner.run()
        runner.report(code)
        return code
    except Abort as e:
        err(e.message)
        if mode == "check":
            executed = runner.executed if runner is not None else 0
            cells = runner.code_cells if runner is not None else 0
            sys.stdout.write(json.dumps({"ok": False, "cells": cells, "executed": executed, "failed_cell": None,
                                         "cell_id": None, "error": e.message}) + "\n")
            sys.stdout.flush()
        return e.code
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        import traceback
        err("internal error: %s: %s" % (type(e).__name__, e))
        traceback.print_exc()
        if runner is not None:
            runner.cleanup_kernel()
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
"""#
}
