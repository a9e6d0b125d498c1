from django.http import JsonResponse


async def health(request):
    return JsonResponse({"status": "ok"})


async def relay(request):
    return JsonResponse({"status": "todo"})
