"""An ms-swift template plugin (``--custom_register_path``) for Qwen2-VL models with their own tokenizer.

ms-swift's ``qwen2_vl`` template hard-codes the real Qwen image and video token ids (151655,
151656) and a default system prompt. On a model whose tokenizer numbers them otherwise (the
demo's tiny Qwen2-VL) it finds no image token to expand, and silently trains each image as one
token instead of its grid. This template reads both ids from the tokenizer and has no system
prompt, so ms-swift encodes a DDQA record exactly as the project's adapter does
(``benchmarks/train_speed.py`` checks it on a few records before timing anything).
"""

from swift.template import register_template
from swift.template.templates.qwen import Qwen2VLTemplate, QwenTemplateMeta

TEMPLATE = "qwen2_vl_tokenizer_ids"


class TokenizerIdsQwen2VLTemplate(Qwen2VLTemplate):
    def init_processor(self, processor) -> None:
        super().init_processor(processor)
        if processor is not None:
            self.image_token_id = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")
            self.video_token_id = self.tokenizer.convert_tokens_to_ids("<|video_pad|>")


register_template(QwenTemplateMeta(TEMPLATE, default_system=None, template_cls=TokenizerIdsQwen2VLTemplate),
                  exist_ok=True)
