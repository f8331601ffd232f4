import Foundation

/// The official `openai` Python client, as an app calling an OpenAI-compatible API through the
/// sidecar runs it (SPEC §14). One scenario per run:
/// `python3 script SCENARIO BASE_URL [ARG]`; it prints one JSON object with what it saw.
enum LLMClientScript {
    static let source = #"""
        import json, sys, time
        import openai

        SCENARIO, BASE = sys.argv[1], sys.argv[2]
        ARG = sys.argv[3] if len(sys.argv) > 3 else ""
        # The app's own key: the version's `headers:` must replace it.
        client = openai.OpenAI(base_url=BASE, api_key="sk-app-own-key", max_retries=0, timeout=20)
        MESSAGES = [{"role": "user", "content": ARG or "Say hello"}]


        def chat(user=None, model="assistant"):
            extra = {"user": user} if user else {}
            raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, **extra)
            answer = raw.parse()
            return {"version": raw.headers.get("x-switchyard-version"), "model": answer.model,
                    "text": answer.choices[0].message.content, "finish_reason": answer.choices[0].finish_reason,
                    "usage": answer.usage.model_dump() if answer.usage else None}


        if SCENARIO == "chat":
            print(json.dumps(chat()))
        elif SCENARIO == "stream":
            start = time.monotonic()
            chunks, arrivals, usage, finish, model = [], [], None, None, None
            with client.chat.completions.with_streaming_response.create(
                model="assistant", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            ) as response:
                version = response.headers.get("x-switchyard-version")
                for chunk in response.parse():
                    model = chunk.model
                    if chunk.usage:
                        usage = chunk.usage.model_dump()
                    if chunk.choices:
                        delta = chunk.choices[0].delta
                        if delta.content:
                            chunks.append(delta.content)
                            arrivals.append(time.monotonic() - start)
                        if chunk.choices[0].finish_reason:
                            finish = chunk.choices[0].finish_reason
            print(json.dumps({"version": version, "model": model, "chunks": chunks, "arrivals": arrivals,
                              "usage": usage, "finish_reason": finish}))
        elif SCENARIO == "completion":
            raw = client.completions.with_raw_response.create(model="assistant", prompt=ARG or "Once upon")
            answer = raw.parse()
            print(json.dumps({"version": raw.headers.get("x-switchyard-version"), "model": answer.model,
                              "text": answer.choices[0].text}))
        elif SCENARIO == "embeddings":
            raw = client.embeddings.with_raw_response.create(model="assistant", input=["first text", "second text"])
            answer = raw.parse()
            print(json.dumps({"version": raw.headers.get("x-switchyard-version"), "model": answer.model,
                              "vectors": [item.embedding for item in answer.data]}))
        elif SCENARIO == "sticky":
            seen = {}
            for n in range(int(ARG or "12")):
                user = "user-%d" % n
                seen[user] = [chat(user=user)["version"] for _ in range(3)]
            print(json.dumps(seen))
        else:
            raise SystemExit("unknown scenario " + SCENARIO)
        """#
}
