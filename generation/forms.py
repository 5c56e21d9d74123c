from django import forms

from providers.models import ModelSpec


class GenerateForm(forms.Form):
    """The generator page's form; the submit service does the real checks."""

    model = forms.ChoiceField()
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    size = forms.CharField(required=False)
    duration = forms.IntegerField(required=False)
    n = forms.IntegerField(required=False, min_value=1)
    seed = forms.IntegerField(required=False, min_value=0)
    negative_prompt = forms.CharField(required=False)
    reference_asset = forms.UUIDField(required=False)
    reference_file = forms.ImageField(required=False)

    def __init__(self, *args, models: list[ModelSpec], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(m.name, m.display_name) for m in models]

    def params(self) -> dict:
        data = self.cleaned_data
        params = {
            name: data[name]
            for name in ("size", "duration", "n", "seed", "negative_prompt")
            if data.get(name) not in (None, "")
        }
        if data.get("reference_asset"):
            params["reference_asset"] = str(data["reference_asset"])
        return params
