"""In-process LMM through Hugging Face transformers: ``AutoModelForImageTextToText`` + ``AutoProcessor``.

Works with the vision-language families whose processor has a chat template (Qwen2-VL, Qwen2.5-VL,
SmolVLM, LLaVA, ...). Decoding is greedy; the log-probabilities of each generated token and its top
alternatives come from the raw logits, so the verdict probability is available. Several requests
decode together (left padding). A request with earlier turns is templated as the whole conversation
(images in the first user turn, the earlier answers as assistant turns) and decoded from the start:
the KV cache of the first turn is not kept, because batched left-padded prompts of different lengths
do not share a reusable prefix. Quantization: NF4 4-bit or 8-bit through bitsandbytes on CUDA
(desktop GPUs and Jetson), torch's dynamic int8 quantization of linear layers on the CPU.

Needs the ``lmm`` extra (transformers, accelerate, bitsandbytes); imported only when this backend is built.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from agent.rerank.backends.base import GeneratedToken, LmmBackend, LmmError, LmmRequest, LmmResponse, Turn
from agent.rerank.config import TransformersBackendConfig

log = logging.getLogger(__name__)

WARMUP_IMAGE_PX = 64


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise LmmError(
            f"the transformers LMM backend needs {module!r}: pip install 'watchword[lmm]' ({exc})"
        ) from exc


def _torch_dtype(torch: Any, name: str, device: str) -> Any:
    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


class TransformersBackend(LmmBackend):
    """Loads the model directory of ``config.model`` and answers requests in batches.

    Raises:
        LmmError: when the libraries are missing, CUDA is asked for but absent, or the directory
            holds no usable model, processor or chat template.
    """

    def __init__(self, config: TransformersBackendConfig) -> None:
        self.config = config
        self.name = f"transformers:{config.model.name}"
        self.max_batch_size = config.max_batch_size
        torch = _require("torch")
        transformers = _require("transformers")
        self._torch = torch
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise LmmError(f"device {config.device} asked for, but CUDA is not available")
        started = time.perf_counter()
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(str(config.model))
        except (OSError, ValueError, KeyError) as exc:
            raise LmmError(f"cannot load the processor from {config.model}: {exc}") from exc
        if getattr(self.processor, "chat_template", None) is None:
            raise LmmError(f"{config.model} has no chat template; the backend needs one to build prompts")
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        try:
            self.model = transformers.AutoModelForImageTextToText.from_pretrained(
                str(config.model), **self._load_kwargs(torch, transformers)
            )
        except (OSError, ValueError, KeyError, ImportError) as exc:
            raise LmmError(f"cannot load the model from {config.model}: {exc}") from exc
        if config.quantization == "none" or config.device == "cpu":
            self.model.to(config.device)
        if config.device == "cpu" and config.quantization == "8bit":
            # torch's eager dynamic quantization: deprecated upstream in favour of torchao, still the
            # one int8 CPU path that needs no extra package
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", UserWarning)
                quantize = torch.ao.quantization.quantize_dynamic
                self.model = quantize(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model.eval()
        self._eos_ids = self._eos_token_ids()
        self._system_role_fails = False
        self.load_s = time.perf_counter() - started
        log.info(
            "LMM %s loaded in %.1f s (%s, %s, quantization %s)",
            config.model,
            self.load_s,
            config.device,
            config.dtype,
            config.quantization,
        )
        if config.warmup:
            warm = time.perf_counter()
            image = np.full((WARMUP_IMAGE_PX, WARMUP_IMAGE_PX, 3), 127, np.uint8)
            self._generate([LmmRequest("Say yes.", (image,), json_output=False)], max_new_tokens=1)
            log.info("LMM warm-up took %.2f s", time.perf_counter() - warm)

    def _load_kwargs(self, torch: Any, transformers: Any) -> dict[str, Any]:
        config = self.config
        dtype = _torch_dtype(torch, config.dtype, config.device)
        major_minor = tuple(int(p) for p in transformers.__version__.split(".")[:2])
        kwargs: dict[str, Any] = {"dtype" if major_minor >= (4, 56) else "torch_dtype": dtype}
        if config.quantization != "none" and config.device.startswith("cuda"):
            _require("bitsandbytes")
            if config.quantization == "4bit":
                quantization = transformers.BitsAndBytesConfig(
                    load_in_4bit=True,
                    bnb_4bit_quant_type="nf4",
                    bnb_4bit_use_double_quant=True,
                    bnb_4bit_compute_dtype=dtype if dtype != torch.float32 else torch.float16,
                )
            else:
                quantization = transformers.BitsAndBytesConfig(load_in_8bit=True)
            kwargs["quantization_config"] = quantization
            kwargs["device_map"] = {"": config.device}
        return kwargs

    def _eos_token_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.model.config, self.tokenizer):
            value = getattr(source, "eos_token_id", None)
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return ids

    # --- generation --------------------------------------------------------------------------

    def _messages(self, request: LmmRequest) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": [{"type": "text", "text": request.system}]})
        for index, (user, answer) in enumerate(request.user_turns()):
            content: list[dict[str, Any]] = [{"type": "image"} for _ in request.images] if index == 0 else []
            content.append({"type": "text", "text": user})
            messages.append({"role": "user", "content": content})
            if answer is not None:
                messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return messages

    def _prompt_text(self, request: LmmRequest) -> str:
        """The chat-templated prompt; templates without a system role get the system text in the user turn."""
        if request.system and not self._system_role_fails:
            try:
                return str(
                    self.processor.apply_chat_template(
                        self._messages(request), add_generation_prompt=True, tokenize=False
                    )
                )
            except Exception as exc:  # jinja2's TemplateError ("System role not supported") and kin
                log.info("chat template rejects a system message (%s); folding it into the prompt", exc)
                self._system_role_fails = True
        if request.system:
            if request.history:  # the system text goes before the first turn's text
                first = Turn(f"{request.system}\n\n{request.history[0].user}", request.history[0].assistant)
                request = replace(request, system=None, history=(first, *request.history[1:]))
            else:
                request = replace(request, system=None, prompt=f"{request.system}\n\n{request.prompt}")
        return str(
            self.processor.apply_chat_template(
                self._messages(request), add_generation_prompt=True, tokenize=False
            )
        )

    def generate(self, requests: Sequence[LmmRequest]) -> list[LmmResponse]:
        responses: list[LmmResponse] = []
        for first in range(0, len(requests), self.max_batch_size):
            batch = requests[first : first + self.max_batch_size]
            self._gate(len(batch))  # each request of the batch takes a token of the budget
            responses.extend(self._generate(batch))
        return responses

    def _generate(
        self, requests: Sequence[LmmRequest], max_new_tokens: int | None = None
    ) -> list[LmmResponse]:
        if not requests:
            return []
        from PIL import Image

        torch = self._torch
        started = time.perf_counter()
        texts = [self._prompt_text(r) for r in requests]
        images = [Image.fromarray(np.ascontiguousarray(im[:, :, ::-1])) for r in requests for im in r.images]
        try:
            inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt").to(
                self.model.device
            )
            prompt_length = inputs["input_ids"].shape[1]
            with torch.inference_mode():
                output = self.model.generate(
                    **inputs,
                    do_sample=False,
                    max_new_tokens=max_new_tokens or self.config.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    output_logits=True,
                    return_dict_in_generate=True,
                )
        except (RuntimeError, ValueError) as exc:  # CUDA out of memory, bad image sizes, ...
            raise LmmError(f"generation failed: {exc}") from exc
        sequences = output.sequences[:, prompt_length:].cpu()
        # (steps, batch, vocab) natural-log probabilities of the raw (unprocessed) logits
        logprobs = torch.stack([step.float() for step in output.logits]).log_softmax(dim=-1).cpu()
        latency_s = time.perf_counter() - started
        return [self._response(sequences[row], logprobs[:, row], latency_s) for row in range(len(requests))]

    def _response(self, sequence: Any, logprobs: Any, latency_s: float) -> LmmResponse:
        torch = self._torch
        token_ids: list[int] = []
        for token_id in sequence.tolist():
            if token_id in self._eos_ids:
                break
            if token_id != self.tokenizer.pad_token_id:
                token_ids.append(token_id)
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        top_k = self.config.top_logprobs
        special = set(self.tokenizer.all_special_ids)
        tokens: list[GeneratedToken] = []
        for step, token_id in enumerate(token_ids):
            if token_id in special:
                continue
            row = logprobs[step]
            alternatives: dict[str, float] = {}
            if top_k:
                values, indices = torch.topk(row, top_k)
                for value, index in zip(values.tolist(), indices.tolist(), strict=True):
                    piece = self.tokenizer.decode([index])
                    # byte pieces of one character all decode to U+FFFD: keep the likeliest of them
                    alternatives.setdefault(piece, float(value))
            piece = self.tokenizer.decode([token_id])
            tokens.append(GeneratedToken(piece, float(row[token_id]), alternatives))
        return LmmResponse(text=text, tokens=tuple(tokens), latency_s=latency_s)

    def close(self) -> None:
        self.model = None
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()
