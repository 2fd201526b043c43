"""TFLite conversion (built-in ops only) in four variants, and a small LiteRT runner.

Variants (all keep a float32 input of raw [0, 1] pixels and float32/int32 outputs, like the SavedModel):
    float32  : plain conversion.
    float16  : weight tensors of >= 4096 elements stored as float16 (dequantized to float32 at load time on CPU),
               smaller ones kept float32 (see `float16_weights`).
    dynamic  : dynamic-range int8: int8 weights, activations quantized on the fly.
    int8     : full integer: int8 weights and activations calibrated on representative images, int8 built-in
               kernels only (TFLITE_BUILTINS_INT8); quantize/dequantize at the float32 input/output boundary.
"""
import re

import numpy as np

import tensorflow as tf

VARIANTS = ("float32", "float16", "dynamic", "int8")


class UnsupportedOpsError(ValueError):
    """The model needs TensorFlow ops that TFLite's built-in op set lacks (would need Flex / SELECT_TF_OPS)."""

    def __init__(self, variant, ops_to_layers, detail=""):
        self.variant = variant
        self.ops_to_layers = dict(ops_to_layers)
        parts = []
        for op, layers in sorted(self.ops_to_layers.items()):
            where = f"in layer {', '.join(repr(x) for x in layers)}" if layers else "(layer not identified)"
            parts.append(f"{op} {where}")
        message = (
            f"TFLite {variant} conversion failed: the model uses TensorFlow ops that are not TFLite built-in ops: "
            f"{'; '.join(parts)}. Only built-in ops are allowed (no Flex / SELECT_TF_OPS); rewrite those layers with "
            "convertible ops (see docs: tf.math.argmax, gather, one_hot matmuls; no keras.random at inference)."
        )
        if detail:
            message += f" Converter said: {detail}"
        super().__init__(message)


def _layer_paths(model):
    """Map of layer name -> list of nested paths ("saccader/bagnet/stem_conv") for every layer in the model."""
    paths = {}

    def walk(layer, prefix):
        for child in getattr(layer, "_layers", None) or []:
            path = f"{prefix}/{child.name}" if prefix else child.name
            paths.setdefault(child.name, []).append(path)
            walk(child, path)

    paths.setdefault(model.name, []).append(model.name)
    walk(model, model.name)
    return paths


_SUFFIX = re.compile(r"_\d+$")


def _layers_for_location(location, model):
    """Layer names found in a converter location such as "random_1/random_policy_1/stateless_random/Op@fn"."""
    scope = location.split("@")[0]
    components = [_SUFFIX.sub("", c) for c in scope.split("/")[:-1]]
    known = _layer_paths(model) if model is not None else {}
    hits = [c for c in components if c in known]
    # The innermost known layer is the one that emitted the op; skip the top-level model when a sublayer matched.
    inner = [c for c in hits if model is None or c != model.name] or hits
    return inner[-1:] if inner else []


def unsupported_ops(error, model=None):
    """{tf op name: [layer names]} from a converter error (``ConverterError.errors`` or its message)."""
    found = {}
    for item in getattr(error, "errors", None) or []:
        op = getattr(getattr(item, "operator", None), "name", "") or ""
        if not op:
            continue
        op = op.split(".", 1)[-1]
        layers = found.setdefault(op, [])
        names = [c.name for c in getattr(getattr(item, "location", None), "call", [])]
        for name in names[:1]:
            for layer in _layers_for_location(name, model):
                if layer not in layers:
                    layers.append(layer)
    if not found:
        text = str(error)
        for op in re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text):
            found.setdefault(op, [])
        match = re.search(r"TF Select ops: ([\w, ]+)", text)
        if match:
            for op in match.group(1).split(","):
                found.setdefault(op.strip(), [])
        for op, location in re.findall(r'fused\["(\w+):", "([^"]+)"\]', text):
            if op in found:
                for layer in _layers_for_location(location, model):
                    if layer not in found[op]:
                        found[op].append(layer)
    return found


def _representative(images, limit):
    images = np.asarray(images, "float32")
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(
            f"Full int8 quantization needs representative images of shape (N, H, W, C) with N >= 1, got shape "
            f"{images.shape}."
        )

    def generator():
        for i in range(min(len(images), limit)):
            yield [images[i : i + 1]]

    return generator


def convert_tflite(saved_model_dir, variant, representative_images=None, model=None, calibration_steps=100):
    """Convert a SavedModel's ``serving_default`` to TFLite bytes with built-in ops only.

    ``representative_images`` (raw [0, 1] pixels, (N, H, W, C)) is required for ``int8``. ``model`` (the Keras
    model) is only used to name the layers of ops that do not convert (`UnsupportedOpsError`).
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown TFLite variant {variant!r}; choose from {', '.join(VARIANTS)}.")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        if representative_images is None:
            raise ValueError("The int8 TFLite variant needs representative_images for calibration.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = _representative(representative_images, calibration_steps)
    try:
        content = converter.convert()
    except Exception as error:  # ConverterError, or RuntimeError from the calibrator
        ops = unsupported_ops(error, model)
        if ops:
            raise UnsupportedOpsError(variant, ops) from error
        raise RuntimeError(f"TFLite {variant} conversion failed: {str(error)[-2000:]}") from error
    return float16_weights(content) if variant == "float16" else content


# Weight tensors smaller than this stay float32 in the float16 variant.
FLOAT16_MIN_ELEMENTS = 4096
_FLOAT16_MAX = 65504.0


def float16_weights(content, min_elements=FLOAT16_MIN_ELEMENTS):
    """The float16 variant of a float32 TFLite model: every constant float32 tensor of at least ``min_elements``
    elements is stored as float16 and turned back into float32 by a DEQUANTIZE op (what the converter's own float16
    mode emits); smaller constants (biases, the stem and the first blocks' convs after BatchNorm folding) stay
    float32.

    Why not the converter's float16 mode, which rounds *every* constant: on the quick-start Saccader it moved the
    logits by 1.7e-3 of their largest magnitude, and rounding the Keras weights to float16 one tensor at a time
    showed why: the error comes mostly from the small early tensors (the stem, group 1's 1x1 convs and
    BatchNorm parameters: a few thousand weights, each feeding every later layer). Keeping the tensors under 4096
    elements in float32 (1.7 % of that model's weights; 0.1 % of the ImageNet Saccader's) brought the error to
    2.2e-4 at the same file size, within a few percent. The rule is the one TFLite applies itself to dynamic-range
    quantization (tensors under 1024 elements stay float), with a larger cut-off.
    A tensor whose values do not fit float16 (|x| > 65504) stays float32 too.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    dequantize = schema.BuiltinOperator.DEQUANTIZE
    code = next((i for i, c in enumerate(model.operatorCodes) if c.builtinCode == dequantize), None)
    if code is None:
        op_code = schema.OperatorCodeT()
        op_code.builtinCode = op_code.deprecatedBuiltinCode = dequantize
        op_code.version = 3  # float16 input, as the converter writes it
        model.operatorCodes.append(op_code)
        code = len(model.operatorCodes) - 1
    users = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            users[tensor.buffer] = users.get(tensor.buffer, 0) + 1
    for graph in model.subgraphs:
        consumed = {i for op in graph.operators for i in (op.inputs if op.inputs is not None else ()) if i >= 0}
        produced = {i for op in graph.operators for i in (op.outputs if op.outputs is not None else ())}
        dequantize_ops = []
        for index in sorted(consumed - produced):
            tensor = graph.tensors[index]
            buffer = model.buffers[tensor.buffer] if tensor.buffer else None
            if tensor.type != schema.TensorType.FLOAT32 or buffer is None or buffer.data is None:
                continue
            if users[tensor.buffer] != 1:  # a buffer shared by several tensors: leave it
                continue
            values = np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), dtype="<f4")
            if values.size < min_elements or not np.all(np.abs(values) <= _FLOAT16_MAX):
                continue
            half_buffer = schema.BufferT()
            half_buffer.data = np.frombuffer(values.astype("<f2").tobytes(), np.uint8)
            model.buffers.append(half_buffer)
            half = schema.TensorT()
            half.name = (tensor.name or b"") + b"_float16"
            half.type = schema.TensorType.FLOAT16
            half.shape = tensor.shape
            half.buffer = len(model.buffers) - 1
            graph.tensors.append(half)
            buffer.data = None  # the float32 copy is dropped from the file
            tensor.buffer = 0  # buffer 0 is the empty sentinel: the tensor is now the DEQUANTIZE op's output
            op = schema.OperatorT()
            op.opcodeIndex = code
            op.inputs = [len(graph.tensors) - 1]
            op.outputs = [index]
            dequantize_ops.append(op)
        graph.operators = dequantize_ops + list(graph.operators)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


class TFLiteRunner:
    """Runs a .tflite file's ``serving_default`` with the LiteRT interpreter on batches of images."""

    def __init__(self, model_path=None, model_content=None, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=None if model_path is None else str(model_path),
                                       model_content=model_content, num_threads=num_threads)
        self.runner = self.interpreter.get_signature_runner("serving_default")

    def __call__(self, images):
        return self.runner(images=np.asarray(images, "float32"))

    def predict(self, images, batch_size=1):
        images = np.asarray(images, "float32")
        chunks = [self(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
