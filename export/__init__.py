"""Model export (CLIP, YOLO) to ONNX and TensorRT, with parity validation and manifests."""
