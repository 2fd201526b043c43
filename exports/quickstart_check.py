"""The first hour's last step (exports/README.md): run an exported SavedModel and its full int8 TFLite file on
held-out images. Usage: python exports/quickstart_check.py [export folder, default exports/quickstart]."""
import json, sys
import numpy as np, tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from saccade_zoo.export import real_images   # held-out cluttered Fashion-MNIST, raw [0, 1] pixels

folder = sys.argv[1] if len(sys.argv) > 1 else "exports/quickstart"
manifest = json.load(open(f"{folder}/manifest.json"))
images, labels = real_images(manifest["input"]["shape"][1:], 200, seed=7)

serve = tf.saved_model.load(f"{folder}/saved_model").signatures["serving_default"]
saved = serve(images=tf.constant(images))                         # raw [0, 1] pixels in, mean/std inside
int8 = Interpreter(model_path=f"{folder}/model_int8.tflite").get_signature_runner("serving_default")
quantised = int8(images=images)                                   # float32 in and out, int8 inside
for name, logits in (("SavedModel", saved["logits"].numpy()), ("full int8 TFLite", quantised["logits"])):
    print(f"{name:17s} top-1 on 200 held-out images: {np.mean(logits.argmax(-1) == labels):.3f}")
first = quantised["boxes"][0].astype(int).tolist()
print("image 0:", manifest["class_names"][int(quantised["logits"][0].argmax())], "(true:",
      manifest["class_names"][int(labels[0])] + "), glimpse boxes (y0, x0, y1, x1):", first)
